"""The records every layer shares: the ``Problem`` every loader produces and the training ``Row``
every data source yields and the step packs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """One verifiable question.

    ``answer`` is the ground-truth final answer ``a*`` (LaTeX for MATH, a number for GSM8K);
    ``solution`` is the human-written expert chain of thought ``c_E`` (may be empty when a data
    set has none). ``level`` is the difficulty 1-5 when known, else ``None``.
    """

    id: str
    question: str
    answer: str
    solution: str = ""
    level: int | None = None
    subject: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def problem_fields(problem: Problem) -> dict[str, Any]:
    """Keyword arguments a reward function receives besides (completion, reference)."""
    return {"id": problem.id, "level": problem.level, "subject": problem.subject,
            "source": problem.source, **problem.extra}


@dataclass
class Row:
    """One (q, o) sequence for the training step.

    ``group`` ties the G outputs of one question together (GRPO), ``pair`` ties o+ and o-
    (DPO, with ``pair_sign`` +1 chosen / -1 rejected); both are -1 when unused and are local to
    the source (the runtime offsets them when it combines terms). ``reward`` is None until scored.
    ``reference`` is the ground-truth answer ``a*`` the reward compares against (``Problem.answer``),
    not the reference policy pi_ref of the step (docs/ARCHITECTURE.md, "Two words").
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    problem_id: str
    reference: str
    completion: str = ""
    reward: float | None = None
    group: int = -1
    pair: int = -1
    pair_sign: int = 0
    finished: bool = True
    fields: dict[str, Any] = field(default_factory=dict)
    reward_parts: dict[str, float] = field(default_factory=dict)  # label -> value, when a term has several
    # the rollout engine's log-prob of each completion token (None: the engine reports none)
    sampler_logprobs: list[float] | None = None
