"""Data sources: where a loss term's (q, o) rows come from (SPEC section 2, the "data source" column).

Every source kind has the same shape, so the runtime never special-cases one:

    build(problems, options, env) -> Source         # registered with @register_source(name, Options)
    source.prepare(env)                             # once, before step 1 (frozen-model sampling)
    source.load_state_dict(state)                   # on resume, after prepare()
    source.next_rows(ctx) -> list[Row]              # this process's rows for one training step
    source.state_dict()                             # the data position, saved in checkpoints

and may have (the runtime asks with ``getattr``):

    source.metrics() -> dict[str, float]            # what the last steps' data looked like
    source.step_samples() -> int | None             # samples of the term's expectation behind the
                                                    # last next_rows on this process, when not one
                                                    # per unit of rows (ExP-SFT: questions drawn)
    source.samples_current_policy: bool             # it samples from ctx.policy (the step's
                                                    # log-probs are then at the sampling temperature)

Sizes are *global* per training step (summed over processes); a source hands each process its
own contiguous share of the step's units (questions, groups, pairs), so a step on N processes
sees exactly the rows a single process would see. Units are never split across processes, so
a GRPO group or a DPO pair always lands on one process.

Adding a source is one file: define an options dataclass and a class with the four methods
above, decorate its builder with ``@register_source``, and import the module in
``expo_rl/sources/__init__.py``. See docs/ADDING_A_METHOD.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from expo_rl.data.records import Problem, Row, problem_fields  # noqa: F401 (sources import them from here)
from expo_rl.policy import encode_prompt
from expo_rl.registry import Registry
from expo_rl.tasks import DemoTask


@dataclass
class SourceEnv:
    """What a source may use besides its problems: plain values and callables, no config.

    One env per loss term: ``name`` is the term's name (used for cache files) and ``score`` uses
    the term's reward function.

    ``prompt(problem)`` is the plain prompt ``q`` the policy sees (the policy layer's zero-shot
    prompt, or a task's own text). ``sample(model, prompts, n, seed)`` returns a ``SampleBatch``
    (expo_rl.policy.sample with the run's sampling settings bound); ``frozen_policy()`` returns the
    frozen initial policy (the reference model unless it was refreshed); ``score(rows)`` fills
    ``row.reward`` with the term's reward function; ``gather(objs)`` concatenates a list across
    processes (identity on one process); ``refresh_reference(policy)`` makes the step's reference
    pi_ref a snapshot of ``policy``'s current weights from now on (online ExP-DPO with
    ``refresh_reference: true``, SPEC 3.4; None where the caller offers no reference to refresh).
    """

    name: str
    tokenizer: Any
    prompt: Callable[[Problem], str]
    sample: Callable[..., Any]
    frozen_policy: Callable[[], Any]
    score: Callable[[list[Row]], None]
    gather: Callable[[list[Any]], list[Any]]
    refresh_reference: Callable[[Any], None] | None = None
    rank: int = 0
    world_size: int = 1
    seed: int = 0
    cache_dir: str | None = None
    show_progress: bool = True
    task: DemoTask | None = None  # a task run's plugin: hinted prompts, checks, expert solutions
    # what produced cached records (model, sampling, task, ...): keys them (sources.cache_key)
    cache_context: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """Per-step inputs: the step number (1-based), the current policy for on-policy sampling, and
    the scored rows of the terms listed before this one in the recipe (by term name), so a
    source can depend on them (e.g. explanations only where a GRPO group had no correct output)."""

    step: int
    policy: Any
    rows: dict[str, list[Row]] = field(default_factory=dict)


class Source(Protocol):
    def prepare(self, env: SourceEnv) -> None: ...

    def next_rows(self, ctx: StepContext) -> list[Row]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SourceSpec:
    name: str
    options: type
    build: Callable[[list[Problem], Any, SourceEnv], Source]
    description: str


SOURCES: Registry[SourceSpec] = Registry("data source")


def register_source(name: str, options: type) -> Callable:
    """Decorator registering ``build(problems, options, env) -> Source`` under ``name``."""

    def wrap(build: Callable) -> Callable:
        doc = (build.__doc__ or "").strip().splitlines()
        SOURCES.add(name, SourceSpec(name, options, build, doc[0] if doc else ""))
        return build

    return wrap


def get_source(name: str) -> SourceSpec:
    """The source registered as ``name`` (:class:`~expo_rl.registry.UnknownNameError` lists the names)."""
    return SOURCES.get(name)


def local_share(units: list[Any], env: SourceEnv) -> list[Any]:
    """This process's contiguous share of a step's global units (sizes must divide evenly)."""
    if len(units) % env.world_size:
        raise ValueError(f"{len(units)} units per step do not split evenly over "
                         f"{env.world_size} processes; make the per-step size a multiple of it")
    k = len(units) // env.world_size
    return units[env.rank * k:(env.rank + 1) * k]


def encode(tokenizer: Any, text: str, *, eos: bool) -> list[int]:
    """Token ids of a completion ``text`` without special tokens, optionally ending with EOS (so
    SFT learns to stop). Prompts go through :func:`question_prompt_ids` instead."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids + [tokenizer.eos_token_id] if eos else ids


def question_prompt_ids(env: SourceEnv, problem: Problem) -> list[int]:
    """The prompt ids of ``problem`` exactly as the sampler tokenises them (``encode_prompt``:
    special tokens only where the prompt string lacks them), so trained and sampled rows agree."""
    return encode_prompt(env.tokenizer, env.prompt(problem))


def step_seed(seed: int, step: int, rank: int, salt: int = 0) -> int:
    """A sampling seed that depends only on (seed, step, rank): resumed runs resample identically."""
    return (seed * 1_000_003 + step * 7_919 + rank * 104_729 + salt * 15_485_863) % (2**31 - 1)


def rows_from_samples(batch: Any, problems: list[Problem], *, group_offset: int = 0) -> list[Row]:
    """Rows from a ``SampleBatch`` over ``problems`` (sample j answers problems[prompt_index[j]]).

    Rows of the same prompt share ``group = group_offset + prompt index`` (the GRPO group).
    """
    rows = []
    for j, index in enumerate(batch.prompt_index):
        problem = problems[index]
        rows.append(Row(
            prompt_ids=list(batch.prompt_ids[j]), completion_ids=list(batch.completion_ids[j]),
            problem_id=problem.id, reference=problem.answer, completion=batch.texts[j],
            group=group_offset + index, finished=bool(batch.finished[j]),
            fields=problem_fields(problem),
            sampler_logprobs=None if getattr(batch, "logprobs", None) is None else list(batch.logprobs[j]),
        ))
    return rows
