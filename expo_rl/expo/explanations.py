"""Self-explanations ``c~ ~ pi(. | q, h)`` and the positive samples ``(q, c~, a*)`` made from them.

SPEC section 3.2 / ExPO paper eq. (7): prompt the policy with the question and a hint (the
ground-truth answer ``a*`` by default, see ``hints``), ask for the reasoning that leads to it,
and use the explanation followed by ``a*`` in the task's answer format as a positive sample,
**scored and trained under the plain prompt q** (the explanation prompt is used only to
generate).

The explanation prompt is the plain prompt with the hint added: ``build_prompt(tokenizer,
template.hinted_question.format(question=q, hint=h), instruction=template.instruction)``, so
chat models get the chat template and plain models the policy layer's plain format, and the
two prompts differ by a few sentences (the paper's argument for why ``c~`` stays
in-distribution). With the ``answer`` hint and a chat template the user turn is exactly::

    {question}

    The correct final answer is {a*}.

    Let's think step by step and explain how to reach this answer, writing it as your own
    solution without saying that the answer was given, and put the final answer within \\boxed{}.

(one line; GSM8K: "... explain the calculations that lead to this answer, ..."), against the
plain prompt's ``{question}\\n\\nLet's think step by step and put the final answer within
\\boxed{}.``. Templates per task (``TEMPLATES``) can be overridden.

Post-processing of each generated explanation, in order:

1. sentences that say the answer was given ("as the hint says ...") are stripped and counted
   (``leak_policy="strip"``; ``"keep"`` only counts, ``"drop"`` rejects the explanation);
2. its final answer is extracted and compared with ``a*`` by the math verifier: ``accepted``
   when equivalent, else ``mismatch`` (or ``no_answer``);
3. ``on_mismatch="drop"`` (default) keeps only accepted ones; ``"repair"`` keeps the others too,
   with their final answer replaced by ``a*`` (status ``repaired``);
4. the positive sample's text is ``with_gold_answer(explanation, a*, format)``: the explanation
   whose final answer is exactly ``a*`` in the task's format.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from expo_rl.data.appendlog import append_records
from expo_rl.data.jsonl import read_json_lines
from expo_rl.data.records import Problem
from expo_rl.expo.answer_format import (
    TASK_FORMATS,
    get_answer_format,
    resolve_task,
    with_gold_answer,
)
from expo_rl.expo.hints import HintOptions, get_hint_source
from expo_rl.expo.leaks import count_hint_mentions, strip_hint_mentions
from expo_rl.policy import build_prompt, sample
from expo_rl.policy.sampling import DRAWS
from expo_rl.verify import extract_answer, is_equivalent

OnMismatch = Literal["drop", "repair"]
LeakPolicy = Literal["strip", "keep", "drop"]
ON_MISMATCH = ("drop", "repair")
LEAK_POLICIES = ("strip", "keep", "drop")


@dataclass(frozen=True)
class ExplanationTemplate:
    """How the hint enters the prompt: ``hinted_question`` has ``{question}`` and ``{hint}``."""

    instruction: str
    hinted_question: str = "{question}\n\n{hint}"

    def render_question(self, question: str, hint: str) -> str:
        return self.hinted_question.format(question=question, hint=hint)


_WITHOUT_SAYING = "writing it as your own solution without saying that the answer was given"
TEMPLATES: dict[str, ExplanationTemplate] = {
    "math": ExplanationTemplate(
        instruction=(
            f"Let's think step by step and explain how to reach this answer, {_WITHOUT_SAYING}, "
            "and put the final answer within \\boxed{}."
        )
    ),
    "gsm8k": ExplanationTemplate(
        instruction=(
            f"Let's think step by step and explain the calculations that lead to this answer, "
            f"{_WITHOUT_SAYING}, and put the final answer within \\boxed{{}}."
        )
    ),
}


def load_template(path: str | Path) -> ExplanationTemplate:
    """A user template from a JSON or YAML file with keys ``instruction`` [, ``hinted_question``]."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or "instruction" not in data:
        raise ValueError(f"{path}: a template needs the key 'instruction' (and optionally 'hinted_question')")
    unknown = set(data) - {"instruction", "hinted_question"}
    if unknown:
        raise ValueError(f"{path}: unknown template keys {sorted(unknown)}; allowed: instruction, hinted_question")
    template = ExplanationTemplate(**data)
    for key in ("{question}", "{hint}"):
        if key not in template.hinted_question:
            raise ValueError(f"{path}: 'hinted_question' must contain {key}")
    return template


@dataclass(frozen=True)
class ExplainConfig:
    """Everything that decides how explanations are generated and filtered (plain values)."""

    hint: str = "answer"
    hint_options: HintOptions = field(default_factory=HintOptions)
    task: str = "auto"
    templates: dict[str, ExplanationTemplate] | None = None  # task -> template; None = TEMPLATES
    answer_format: str | None = None  # None = the task's default format
    on_mismatch: OnMismatch = "drop"
    leak_policy: LeakPolicy = "strip"
    temperature: float = 0.9
    top_p: float = 1.0
    max_new_tokens: int = 512
    draw: str = "multinomial"  # how tokens are drawn (expo_rl.policy.sampling: multinomial | inverse_cdf)

    def __post_init__(self) -> None:
        get_hint_source(self.hint)
        if self.draw not in DRAWS:
            raise ValueError(f"draw={self.draw!r}; allowed: {', '.join(DRAWS)}")
        if self.on_mismatch not in ON_MISMATCH:
            raise ValueError(f"on_mismatch={self.on_mismatch!r}; allowed: {', '.join(ON_MISMATCH)}")
        if self.leak_policy not in LEAK_POLICIES:
            raise ValueError(f"leak_policy={self.leak_policy!r}; allowed: {', '.join(LEAK_POLICIES)}")
        if self.answer_format is not None:
            get_answer_format(self.answer_format)

    def template_for(self, task: str) -> ExplanationTemplate:
        return (self.templates or TEMPLATES).get(task, TEMPLATES[task])

    def format_for(self, task: str):
        return get_answer_format(self.answer_format or TASK_FORMATS[task])


def explanation_prompt(tokenizer: Any, problem: Problem, config: ExplainConfig) -> tuple[str, str]:
    """The prompt that asks for a self-explanation, and the hint text it contains."""
    task = resolve_task(config.task, problem)
    hint = get_hint_source(config.hint)(problem, config.hint_options)
    template = config.template_for(task)
    prompt = build_prompt(
        tokenizer, template.render_question(problem.question, hint), instruction=template.instruction
    )
    return prompt, hint


@dataclass
class Explanation:
    """One generated self-explanation and what became of it.

    ``text`` is the generated explanation after leak stripping; ``positive`` the positive sample
    (explanation followed by ``a*``), ``None`` when the explanation was dropped.
    """

    id: str
    sample_index: int
    answer: str
    hint_source: str
    hint: str
    raw: str
    finished: bool
    text: str
    status: str  # accepted | repaired | mismatch | no_answer | leak
    extracted_answer: str | None
    hint_mentions: int
    positive: str | None
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.positive is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Explanation:
        names = cls.__dataclass_fields__
        return cls(**{key: value for key, value in row.items() if key in names})


def judge_explanation(raw: str, problem: Problem, config: ExplainConfig) -> dict[str, Any]:
    """Leak handling, answer check and positive-sample text for one raw explanation.

    Returns the fields ``text, status, extracted_answer, hint_mentions, positive``.
    """
    if config.leak_policy == "strip":
        text, mentions = strip_hint_mentions(raw)
    else:
        text, mentions = raw.strip(), count_hint_mentions(raw)
    extracted = extract_answer(text)
    if config.leak_policy == "drop" and mentions:
        status = "leak"
    elif extracted is None:
        status = "no_answer"
    elif is_equivalent(extracted, problem.answer):
        status = "accepted"
    else:
        status = "mismatch"
    if status in ("no_answer", "mismatch") and config.on_mismatch == "repair" and text:
        status = "repaired"
    positive = None
    if status in ("accepted", "repaired"):
        fmt = config.format_for(resolve_task(config.task, problem))
        positive = with_gold_answer(text, problem.answer, fmt)
    return {
        "text": text,
        "status": status,
        "extracted_answer": extracted,
        "hint_mentions": mentions,
        "positive": positive,
    }


def generate_explanations(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: ExplainConfig,
    *,
    n: int = 1,
    seed: int | None = None,
    batch_size: int | None = None,
    policy: dict[str, Any] | None = None,
    sampler: Callable[..., Any] | None = None,
) -> list[Explanation]:
    """``n`` self-explanations per problem, judged (``len(problems) * n`` rows, problem-major).

    ``sampler(model, prompts, n=, seed=) -> SampleBatch`` replaces ``expo_rl.policy.sample``
    with the config's temperature/top-p/length (the trainer passes its own sampling settings).
    """
    if not problems:
        return []
    prompts, hints = zip(*(explanation_prompt(tokenizer, p, config) for p in problems))
    if sampler is None:
        batch = sample(
            model,
            tokenizer,
            list(prompts),
            n=n,
            temperature=config.temperature,
            top_p=config.top_p,
            max_new_tokens=config.max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            draw=config.draw,
        )
    else:
        batch = sampler(model, list(prompts), n=n, seed=seed)
    seen: Counter[int] = Counter()
    out: list[Explanation] = []
    for row, index in enumerate(batch.prompt_index):
        problem = problems[index]
        raw = batch.texts[row]
        out.append(
            Explanation(
                id=problem.id,
                sample_index=seen[index],
                answer=problem.answer,
                hint_source=config.hint,
                hint=hints[index],
                raw=raw,
                finished=bool(batch.finished[row]),
                policy=dict(policy or {}),
                **judge_explanation(raw, problem, config),
            )
        )
        seen[index] += 1
    return out


def acceptance_stats(explanations: Iterable[Explanation]) -> dict[str, float]:
    """Counts per status, the acceptance rate (usable / all) and the leak count."""
    rows = list(explanations)
    counts = Counter(e.status for e in rows)
    stats: dict[str, float] = {f"explain/{status}": float(c) for status, c in sorted(counts.items())}
    stats["explain/total"] = float(len(rows))
    stats["explain/acceptance_rate"] = sum(e.usable for e in rows) / len(rows) if rows else 0.0
    stats["explain/hint_mentions"] = float(sum(e.hint_mentions for e in rows))
    return stats


def policy_fingerprint(model: torch.nn.Module) -> str:
    """A short hash of every parameter's bytes (identifies the policy version that generated)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def policy_version(model: torch.nn.Module, spec: str, step: int | None = None) -> dict[str, Any]:
    """``{"model": spec, "step": step, "hash": fingerprint, "time": iso date}``."""
    return {
        "model": spec,
        "step": step,
        "hash": policy_fingerprint(model),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def read_explanations(path: str | Path) -> list[Explanation]:
    """All explanation records of a JSONL cache (a missing file is empty; a torn line from an
    interrupted append is skipped with a warning)."""
    out = []
    for line_no, record in read_json_lines(path, missing_ok=True, bad="warn"):
        try:
            out.append(Explanation.from_json(record))
        except (TypeError, AttributeError) as error:
            raise ValueError(f"{path}:{line_no}: not an explanation record ({error})") from None
    return out


def append_explanations(path: str | Path, explanations: Iterable[Explanation]) -> None:
    """Append records to a JSONL cache (flushed, so an interrupted run keeps what it wrote)."""
    append_records(path, (e.to_json() for e in explanations), ensure_ascii=False)
