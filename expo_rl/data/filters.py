"""Subsets of a problem list: by level, by subject, a seeded shuffle, a limit."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from expo_rl.data.records import Problem
from expo_rl.data.result import DataError


def _as_set(value: int | str | Iterable | None) -> set | None:
    if value is None:
        return None
    if isinstance(value, (int, str)):
        return {value}
    return set(value)


def select_problems(problems: Sequence[Problem], *, levels: int | Iterable[int] | None = None,
                    subjects: str | Iterable[str] | None = None, limit: int | None = None,
                    shuffle_seed: int | None = None) -> list[Problem]:
    """Filter, then shuffle, then cut.

    ``levels``: keep problems whose level is one of these (a problem with unknown level ``None``
    is kept only when ``None`` is listed); ``subjects``: case-insensitive subject names;
    ``shuffle_seed``: shuffle with ``random.Random(seed)`` (the same seed gives the same subset);
    ``limit``: keep the first ``limit`` (after the shuffle).
    """
    level_set = _as_set(levels)
    if level_set is not None:
        bad = [x for x in level_set if x is not None and (not isinstance(x, int) or x < 1)]
        if bad:
            raise DataError(f"levels={sorted(map(str, bad))}: levels are positive integers (or None)")
    subject_set = _as_set(subjects)
    subject_keys = {s.lower() for s in subject_set} if subject_set is not None else None
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise DataError(f"limit={limit!r}: expected a non-negative integer")
    chosen = [
        p for p in problems
        if (level_set is None or p.level in level_set)
        and (subject_keys is None or (p.subject or "").lower() in subject_keys)
    ]
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(chosen)
    return chosen if limit is None else chosen[:limit]
