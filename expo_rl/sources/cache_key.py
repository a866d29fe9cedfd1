"""Cache records keyed by what produced them.

Every record a source appends to a cache under ``<output_dir>/cache`` carries ``cache_key``: a
hash of the run's *cache context* (model spec and a fingerprint of its files, dtype, sampling
settings, prompt instruction, seed, the term's source, reward and generation options; built by
``expo_rl.engine.cache_context``) together with the problem's id, question, answer and solution.
A reader uses only records whose key equals the one it would write now, so a changed data file
(same ids, new questions), model, temperature or task regenerates those records instead of
reusing them; older records stay in the file, unused, and the count is reported.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from typing import Any

from expo_rl.data.records import Problem

KEY_FIELD = "cache_key"


def problem_key(context: dict[str, Any], problem: Problem) -> str:
    """The key of ``problem``'s records under ``context`` (16 hex digits)."""
    payload = {"context": context, "id": problem.id, "question": problem.question,
               "answer": problem.answer, "solution": problem.solution}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def problem_keys(context: dict[str, Any], problems: Iterable[Problem]) -> dict[str, str]:
    return {p.id: problem_key(context, p) for p in problems}


def warn_stale(path: Any, stale: int, kind: str = "records") -> None:
    """Say that ``stale`` cached records were produced by other settings and are not reused."""
    if stale:
        print(f"warning: {path}: {stale} cached {kind} were produced by another model, data, sampling "
              f"or task setting (cache key differs) and are regenerated, not reused", file=sys.stderr)


__all__ = ["KEY_FIELD", "problem_key", "problem_keys", "warn_stale"]
