"""Config -> parts: problems, rewards, the frozen initial policy, and one (source, reward,
coefficient, weight) per loss term. The only place where configuration is read; everything it builds takes
plain values.

This module and ``runtime.py`` sit at the recipe layer (they import ``expo_rl.sources``), above
the engine's step/optimiser/checkpoint modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import gather_object

from expo_rl.data import Problem, load_problems
from expo_rl.engine.cache_context import cache_context
from expo_rl.engine.config import TASK_REWARD, RunConfig, TermConfig, reward_names  # noqa: F401 (recipe.reward_names)
from expo_rl.engine.rollouts import stop_ids
from expo_rl.engine.typed_config import ConfigError, from_dict
from expo_rl.policy import build_prompt, load_policy, messages_prompt, sample
from expo_rl.policy.logprobs import unwrap
from expo_rl.policy.lora import load_4bit_base
from expo_rl.sources import Row, Source, SourceEnv, get_source
from expo_rl.tasks import DemoTask, load_task
from expo_rl.tasks.pools import held_out_sets, training_pool
from expo_rl.verify import RewardPart, WeightedReward, get_reward, with_args

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class ProblemSet:
    """The run's questions: ``train`` in the order sources walk them, ``held_out`` per level
    (the evaluation set, never trained on), and the task plugin of a task run (else None)."""

    train: list[Problem]
    held_out: dict[int, list[Problem]]
    task: DemoTask | None = None


def task_reward(task: DemoTask, problems: list[Problem]) -> Callable[..., float]:
    """The task's verifier as a reward ``fn(completion, reference, *, id, **fields)``: the row's
    problem is found by id among ``problems`` (ids must name one question each)."""
    by_id: dict[str, Problem] = {}
    for problem in problems:
        seen = by_id.setdefault(problem.id, problem)
        if (seen.question, seen.answer) != (problem.question, problem.answer):
            raise ValueError(f"task {task.name!r}: problem id {problem.id!r} names two different questions; "
                             "make_problem must give each distinct question its own id")

    def reward(completion: str, reference: str, *, id: str, **fields: Any) -> float:  # noqa: A002
        return task.reward(by_id[id], completion)

    reward.__name__ = f"task:{task.name}"
    return reward


def resolve_reward(name: str | Callable[..., float] | None, problems: ProblemSet | None = None
                   ) -> Callable[..., float] | None:
    """A registry name, ``task`` (the task plugin's verifier), ``'package.module:function'``, or
    the reward callable itself (the object-level API)."""
    if name is None or callable(name):
        return name
    if name == TASK_REWARD:
        if problems is None or problems.task is None:
            raise ConfigError("reward 'task' needs a task run: set data.task (or --task)")
        everything = problems.train + [p for level in problems.held_out.values() for p in level]
        return task_reward(problems.task, everything)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"reward {name!r}: cannot import {attr} from {module} ({error})") from None
    return get_reward(name)


def term_reward(term: TermConfig, problem_set: ProblemSet | None = None) -> WeightedReward | None:
    """The term's reward: ``rewards`` (weighted parts) or the ``reward`` shorthand (one part)."""
    if term.rewards is not None:
        return WeightedReward([RewardPart(spec.key, with_args(resolve_reward(spec.name, problem_set), spec.args), spec.weight)
                               for spec in term.rewards])
    fn = resolve_reward(term.reward, problem_set)
    if fn is None:
        return None
    label = term.reward.rpartition(":")[2] if isinstance(term.reward, str) else getattr(fn, "__name__", "reward")
    return WeightedReward([RewardPart(label, fn)])


def reward_fields(row: Row, max_new_tokens: int) -> dict[str, Any]:
    """What a reward function receives besides (completion, reference): the problem's fields,
    the completion's length in tokens, whether it ended at EOS, and the generation cap."""
    return {**row.fields, "completion_tokens": len(row.completion_ids), "finished": row.finished,
            "max_new_tokens": max_new_tokens}


@dataclass
class Parts:
    """The objects a run trains: the policy and its tokenizer, the questions, and a loader of the
    initial policy (pi_ref and the sampler of once-sampled sources, :class:`FrozenPolicy`).
    :func:`load_parts` builds them from a config (the YAML path); ``expo_rl.train`` takes them
    from the caller (the object-level API); both run through ``runtime.train``."""

    model: torch.nn.Module
    tokenizer: PreTrainedTokenizerBase
    problems: ProblemSet
    initial_policy: Callable[[], torch.nn.Module]


def load_parts(config: RunConfig, device: torch.device | str = "cpu") -> Parts:
    """``model.policy`` loaded (on ``device``) and the problems of ``data`` / ``eval.data``."""
    dtype = getattr(torch, config.model.dtype)
    model, tokenizer = load_policy(config.model.policy, dtype=dtype, device=str(device))
    if config.model.lora.load_in_4bit:  # QLoRA (GPU): 4-bit NF4 base weights, the same tokenizer
        if config.model.lora.r < 1:
            raise ConfigError("config key 'model.lora.load_in_4bit': needs model.lora.r >= 1 (QLoRA)")
        model = load_4bit_base(config.model.policy)
    # load_policy is deterministic, so loading again gives the initial policy (FrozenPolicy)
    return Parts(model, tokenizer, load_problem_set(config),
                 lambda: load_policy(config.model.policy, dtype=dtype)[0])


def load_problem_set(config: RunConfig) -> ProblemSet:
    """The run's questions. Data sets: loader -> level filter -> limit (in file order; sources
    shuffle), held-out set from ``eval.data`` (grouped by level). Task runs: ``train.steps``
    blocks of ``data.task_mix`` questions per level drawn by the task's generator, and
    ``data.task_held_out`` questions per level kept apart (``expo_rl.tasks.pools``)."""
    data = config.data
    if data.task is not None:
        return task_problem_set(config)
    problems = load_problems(data.name, data.split, data_dir=data.data_dir, levels=data.levels,
                             limit=data.limit).problems
    if not problems:
        raise ConfigError(f"config key 'data': no problems left from {data.name!r} "
                          f"(levels={data.levels}, limit={data.limit})")
    return ProblemSet(problems, group_by_level(load_problems(config.eval.data, data_dir=data.data_dir).problems)
                      if config.eval.data is not None else {})


def group_by_level(problems: list[Problem]) -> dict[int, list[Problem]]:
    """Problems grouped by level (0: no level), in order."""
    groups: dict[int, list[Problem]] = {}
    for problem in problems:
        groups.setdefault(problem.level or 0, []).append(problem)
    return groups


def task_problem_set(config: RunConfig) -> ProblemSet:
    """Training pool and held-out set of a task run (see :func:`load_problem_set`)."""
    try:
        task = load_task(config.data.task)
    except (ValueError, FileNotFoundError, TypeError) as error:
        raise ConfigError(f"config key 'data.task': {error}") from None
    levels = sorted(task.levels)
    mix = config.data.task_mix or [1] * len(levels)
    if len(mix) != len(levels):
        raise ConfigError(f"config key 'data.task_mix': {len(mix)} counts for task {task.name!r} with "
                          f"{len(levels)} levels {levels}; give one count per level, easiest first")
    held_out = held_out_sets(task, config.data.task_held_out)
    train = training_pool(task, dict(zip(levels, mix)), config.train.steps, held_out)
    if config.eval.data is not None:
        held_out = group_by_level(load_problems(config.eval.data, data_dir=config.data.data_dir).problems)
    return ProblemSet(train, held_out, task)


def prompt_function(config: RunConfig, tokenizer: Any, task: DemoTask | None) -> Callable[[Problem], str]:
    """``prompt(problem) -> str`` (``SourceEnv.prompt``): a task's own text; a conversational
    problem's turns (``extra["messages"]``, TRL's format) through :func:`messages_prompt`; else the
    policy layer's zero-shot prompt (:func:`build_prompt`; ``data.instruction`` None: its default).
    ``data.system_prompt`` is the system turn of every prompt that has none."""
    if task is not None:
        return task.prompt
    instruction, system = config.data.instruction, config.data.system_prompt
    kwargs = {} if instruction is None else {"instruction": instruction}

    def prompt(problem: Problem) -> str:
        if "messages" in problem.extra:
            return messages_prompt(tokenizer, problem.extra["messages"], system=system, instruction=instruction)
        return build_prompt(tokenizer, problem.question, system=system, **kwargs)

    return prompt


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: otherwise the old, reference and current log-probs of the same
    tokens would differ by noise and ratios would not be 1 at the first inner update."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


@dataclass
class BuiltTerm:
    """One loss term, built from its :class:`TermConfig` (the public ``expo_rl.Term``): its config,
    source, reward function and source env. The step's view of the same term is ``StepTerm``."""

    config: TermConfig
    source: Source
    reward: WeightedReward | None
    env: SourceEnv

    @property
    def name(self) -> str:
        return self.config.label


class FrozenPolicy:
    """The frozen initial policy: pi_ref, and the sampler of once-sampled sources (RFT, offline
    preference pairs, offline self-explanations).

    It is loaded again from the run's model spec rather than copied: ``load_policy`` is
    deterministic (the same files, or the same seeded tiny init), so the second load *is* the
    initial policy even when first asked for at step 50, and nothing is held in memory when no
    term and no source needs it. It is loaded at set-up when it serves as the reference.

    ``reference()`` is pi_ref: the initial policy until a source calls
    :meth:`refresh_reference` (online ExP-DPO with ``refresh_reference: true``, SPEC 3.4), after
    which it is a snapshot of the policy as it was at that call. The first refresh takes over
    the loaded initial copy as the snapshot; ``frozen()`` then loads the initial policy again
    only if a source still asks for it, so a refreshed run holds one frozen copy, not two.
    """

    def __init__(self, load: Callable[[], torch.nn.Module], device: torch.device, *, eager: bool) -> None:
        self._load, self._device = load, device
        self.model: torch.nn.Module | None = None
        self.snapshot: torch.nn.Module | None = None
        self.refreshes = 0
        if eager:
            self()

    def _loaded(self) -> torch.nn.Module:
        model = self._load()
        disable_dropout(model)
        return model.to(self._device).eval().requires_grad_(False)

    def __call__(self) -> torch.nn.Module:
        """The initial policy."""
        if self.model is None:
            self.model = self._loaded()
        return self.model

    @contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """pi_ref for the duration of a ``with`` block: the initial policy, or the last snapshot
        (:meth:`refresh_reference`). (A LoRA run's reference disables adapters instead:
        ``expo_rl.engine.lora_policy.BaseModelReference``.)"""
        yield self.snapshot if self.snapshot is not None else self()

    @torch.no_grad()
    def refresh_reference(self, policy: torch.nn.Module) -> None:
        """Make pi_ref a copy of ``policy``'s current weights (a bare or wrapped module; extra
        entries such as PPO's value head are ignored)."""
        if self.snapshot is None:
            self.snapshot = self.model if self.model is not None else self._loaded()
            self.model = None
        state = unwrap(policy).state_dict()
        wanted = self.snapshot.state_dict()
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise ValueError(f"refresh_reference: the policy lacks {len(missing)} of the reference's "
                             f"weights (e.g. {missing[0]!r}); is it the same architecture?")
        self.snapshot.load_state_dict({key: state[key] for key in wanted})
        self.refreshes += 1


def build_terms(config: RunConfig, problem_set: ProblemSet, *, tokenizer: Any, frozen: FrozenPolicy,
                accelerator: Any, output_dir: Path, rollout: Any = None) -> list[BuiltTerm]:
    """One :class:`BuiltTerm` per ``config.terms`` entry, each with its own :class:`SourceEnv`.

    ``rollout``: a rollout engine (``expo_rl.rollout``) that samples the current policy; None
    (``sampling.engine: hf``) samples with the built-in decode loop. The frozen policy is always
    sampled with the built-in loop (its samples are drawn once and cached)."""
    s = config.sampling
    prompt = prompt_function(config, tokenizer, problem_set.task)
    stops = stop_ids(config, tokenizer)

    def sample_fn(model: Any, prompts: list[str], *, n: int, seed: int) -> Any:
        if rollout is not None and model is not frozen.model:
            return rollout.sample(model, prompts, n=n, seed=seed)
        was_training = model.training
        model.eval()
        try:
            # autocast too for the frozen copy, which accelerate did not prepare
            with torch.no_grad(), accelerator.autocast():
                return sample(model, tokenizer, prompts, n=n, temperature=s.temperature, top_p=s.top_p,
                              max_new_tokens=s.max_new_tokens, seed=seed, batch_size=s.batch_size, draw=s.draw,
                              stop_ids=stops)
        finally:
            model.train(was_training)

    def gather(objs: list[Any]) -> list[Any]:
        return gather_object(objs) if accelerator.num_processes > 1 else list(objs)

    terms = []
    for i, term_config in enumerate(config.terms):
        reward = term_reward(term_config, problem_set)
        log_parts = term_config.rewards is not None

        def score(rows: list[Row], reward: WeightedReward | None = reward, log_parts: bool = log_parts) -> None:
            todo = [r for r in rows if r.reward is None]
            if reward is None or not todo:
                return
            totals, parts = reward.score([r.completion for r in todo], [r.reference for r in todo],
                                         [reward_fields(r, s.max_new_tokens) for r in todo])
            for j, (row, value) in enumerate(zip(todo, totals)):
                row.reward = float(value)
                if log_parts:
                    row.reward_parts = {label: float(values[j]) for label, values in parts.items()}

        env = SourceEnv(
            name=term_config.label, tokenizer=tokenizer, prompt=prompt, sample=sample_fn,
            frozen_policy=frozen, score=score, gather=gather, refresh_reference=frozen.refresh_reference,
            rank=accelerator.process_index,
            world_size=accelerator.num_processes, seed=config.train.seed,
            cache_dir=str(output_dir / "cache"), show_progress=config.train.progress,
            task=problem_set.task,
            cache_context=cache_context(config, term_config),
        )
        spec = get_source(term_config.source)
        options = from_dict(spec.options, term_config.source_args, f"terms.{i}.source_args")
        terms.append(BuiltTerm(term_config, spec.build(problem_set.train, options, env), reward, env))
    return terms
