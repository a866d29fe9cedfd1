"""The problem record every loader produces and every other layer consumes."""

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
