"""Is a predicted answer equivalent to the ground truth? (``r = 1{a ~ a*}``, SPEC section 1.)

Decided by ``math-verify`` (LaTeX, fractions, units, intervals, tuples, sets), run in a worker
process with a per-call time limit (:mod:`expo_rl.verify.pool`), so it is safe on any thread
and in any process of a training loop. Order of checks:

1. empty input -> not equivalent (counted as a parse failure);
2. equal after a conservative string normalisation (``\\left``/``\\right``, ``\\dfrac``,
   ``\\text{}``, spaces, ``^\\circ``, ``$``) -> equivalent, without math-verify;
3. a cached result for the same (pred, gold, strict);
4. math-verify in a worker; overrunning ``timeout_s`` -> not equivalent, counted as a timeout.

``is_equivalent`` never raises; every outcome is counted in ``verifier_stats``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from expo_rl.verify import pool as _pool
from expo_rl.verify.stats import verifier_stats

DEFAULT_TIMEOUT_S = 5.0
_CACHE_SIZE = 65_536

_TEXT_MACRO = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![a-zA-Z])")
_SPACING = re.compile(r"\\[!,;: ]|\\quad|\\qquad|~")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison.

    ``status``: "string_match", "math_verify", "cache", "empty", "timeout", "error" or
    "unguarded" (ran in-process without a limit because no worker could be started).
    """

    equal: bool
    status: str
    pred_parsed: bool = True
    gold_parsed: bool = True


def normalize_answer(answer: str) -> str:
    """A canonical string for the fast path: only rewrites that never change the value."""
    text = answer.strip()
    text = _TEXT_MACRO.sub(r"\1", text)
    text = _SIZING.sub("", text)
    text = _SPACING.sub("", text)
    text = _DEGREE.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = text.replace("$", "").replace(" ", "")
    return text.rstrip(".")


class _ResultCache:
    """A thread-safe LRU of (pred, gold, strict) -> Verdict (only completed comparisons)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str, bool], Verdict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, bool]) -> Verdict | None:
        with self._lock:
            verdict = self._data.get(key)
            if verdict is not None:
                self._data.move_to_end(key)
            return verdict

    def put(self, key: tuple[str, str, bool], verdict: Verdict) -> None:
        with self._lock:
            self._data[key] = verdict
            if len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_cache = _ResultCache(_CACHE_SIZE)
_in_process_only = False  # set when worker processes cannot be started here


def _after_fork_in_child() -> None:
    _cache._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def clear_cache() -> None:
    """Forget cached comparisons (tests that count timeouts need a cold cache)."""
    _cache.clear()


def _run_guarded(pred: str, gold: str, strict: bool, timeout_s: float) -> Verdict:
    global _in_process_only
    if not _in_process_only:
        try:
            reply = _pool.get_pool().run(pred, gold, strict, timeout_s)
        except (OSError, _pool.WorkerStartError):
            _in_process_only = True
        else:
            if reply is None:
                verifier_stats.add(timeouts=1, worker_restarts=1)
                return Verdict(False, "timeout", False, False)
            return _verdict_from_reply(reply, "math_verify")
    # No subprocesses on this platform/sandbox: correct but without a time limit.
    from expo_rl.verify.mathverify import check

    verifier_stats.add(unguarded_calls=1)
    return _verdict_from_reply(check(pred, gold, strict), "unguarded")


def _verdict_from_reply(reply: dict, status: str) -> Verdict:
    if reply.get("error"):
        verifier_stats.add(errors=1)
        if reply["error"] == "verifier worker died":
            verifier_stats.add(worker_restarts=1)
        return Verdict(False, "error", bool(reply["pred_parsed"]), bool(reply["gold_parsed"]))
    return Verdict(bool(reply["equal"]), status, bool(reply["pred_parsed"]),
                   bool(reply["gold_parsed"]))


def check_equivalence(pred: str | None, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                      strict: bool = True, string_match: bool = True) -> Verdict:
    """Compare ``pred`` with ``gold`` (steps in the module docstring); never raises.

    ``strict`` is math-verify's comparison mode: variables must match and a set is never equal
    to a tuple. ``timeout_s`` bounds the math-verify call (seconds, any thread, any process).
    ``string_match=False`` skips the string fast path and the cache (to measure math-verify
    alone).
    """
    start = time.perf_counter()
    verdict = Verdict(False, "error", False, False)
    try:
        verdict = _check(pred, gold, timeout_s=timeout_s, strict=strict, string_match=string_match)
    except Exception:  # a verifier bug must cost one reward, not the training run
        verifier_stats.add(errors=1)
    finally:
        # A timeout or an error says nothing about parsing: count parse failures only when
        # the parser actually ran (or the input was empty).
        parsed_known = verdict.status in ("math_verify", "unguarded", "empty", "cache")
        verifier_stats.add(
            calls=1, seconds=time.perf_counter() - start, equivalent=int(verdict.equal),
            pred_parse_failures=int(parsed_known and not verdict.pred_parsed),
            gold_parse_failures=int(parsed_known and not verdict.gold_parsed),
        )
    return verdict


def _check(pred: str | None, gold: str | None, *, timeout_s: float, strict: bool,
           string_match: bool) -> Verdict:
    pred = (pred or "").strip()
    gold = (gold or "").strip()
    if not pred or not gold:
        return Verdict(False, "empty", bool(pred), bool(gold))
    if not string_match:
        return _run_guarded(pred, gold, strict, timeout_s)
    if normalize_answer(pred) == normalize_answer(gold):
        verifier_stats.add(string_matches=1)
        return Verdict(True, "string_match")
    key = (pred, gold, strict)
    cached = _cache.get(key)
    if cached is not None:
        verifier_stats.add(cache_hits=1)
        # A cached verdict repeats the parse outcome of the call it caches, so the parse-failure
        # counts do not depend on what an earlier call (or a resumed run's cold cache) saw.
        return Verdict(cached.equal, "cache", cached.pred_parsed, cached.gold_parsed)
    verdict = _run_guarded(pred, gold, strict, timeout_s)
    if verdict.status in ("math_verify", "unguarded"):
        _cache.put(key, verdict)
    return verdict


def is_equivalent(pred: str | None, gold: str | None, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                  strict: bool = True) -> bool:
    """True when answer ``pred`` is mathematically equivalent to ``gold``; never raises.

    Both are bare answers (already extracted: ``\\frac{1}{2}``, ``(3, \\frac{\\pi}{2})``,
    ``18``). A comparison that takes longer than ``timeout_s`` counts as not equivalent and
    increments ``verifier_stats.timeouts``.
    """
    return check_equivalence(pred, gold, timeout_s=timeout_s, strict=strict).equal
