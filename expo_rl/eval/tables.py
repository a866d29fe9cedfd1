"""pass@k tables: overall, per difficulty level, per subject; as dicts and as printable text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from expo_rl.eval.passk import mean_pass_at_k

UNKNOWN = "unknown"


@dataclass(frozen=True)
class ProblemScore:
    """One problem's outcome: ``correct`` of ``n`` samples were judged correct."""

    id: str
    n: int
    correct: int
    level: int | None = None
    subject: str | None = None


def pass_at_k_row(scores: Sequence[ProblemScore], ks: Sequence[int]) -> dict[int, float]:
    """``{k: mean pass@k over scores}``."""
    return {k: mean_pass_at_k(((s.n, s.correct) for s in scores), k) for k in ks}


def _level_key(score: ProblemScore) -> str:
    return str(score.level) if score.level is not None else UNKNOWN


def _subject_key(score: ProblemScore) -> str:
    return score.subject or UNKNOWN


def _sort_key(name: str) -> tuple[int, int | str]:
    # numbers in numeric order, then names, "unknown" last
    if name == UNKNOWN:
        return (2, "")
    return (0, int(name)) if name.isdigit() else (1, name)


def grouped(scores: Sequence[ProblemScore], key: Callable[[ProblemScore], str]
            ) -> dict[str, list[ProblemScore]]:
    groups: dict[str, list[ProblemScore]] = {}
    for score in scores:
        groups.setdefault(key(score), []).append(score)
    return {name: groups[name] for name in sorted(groups, key=_sort_key)}


def by_level(scores: Sequence[ProblemScore], ks: Sequence[int]) -> dict[str, dict[int, float]]:
    """``{level: {k: pass@k}}``; problems of unknown level under ``"unknown"``."""
    return {name: pass_at_k_row(group, ks) for name, group in grouped(scores, _level_key).items()}


def by_subject(scores: Sequence[ProblemScore], ks: Sequence[int]) -> dict[str, dict[int, float]]:
    """``{subject: {k: pass@k}}``."""
    return {name: pass_at_k_row(group, ks) for name, group in grouped(scores, _subject_key).items()}


def format_table(scores: Sequence[ProblemScore], ks: Sequence[int], *, group: str = "level") -> str:
    """A text table: one row per level (or subject) with its problem count, then "all"."""
    key = _level_key if group == "level" else _subject_key
    rows = [(name, len(items), pass_at_k_row(items, ks)) for name, items in grouped(scores, key).items()]
    rows.append(("all", len(scores), pass_at_k_row(scores, ks)))
    width = max(len(group), *(len(name) for name, _, _ in rows))
    header = f"{group:<{width}}  {'problems':>8}" + "".join(f"  {'pass@' + str(k):>8}" for k in ks)
    lines = [header, "-" * len(header)]
    for name, count, values in rows:
        lines.append(f"{name:<{width}}  {count:>8}" + "".join(f"  {values[k]:>8.3f}" for k in ks))
    return "\n".join(lines)
