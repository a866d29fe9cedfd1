"""Thread-safe counters of what the verifier did (calls, timeouts, parse failures, ...)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, fields


@dataclass
class VerifierStats:
    """Counters since the last :meth:`reset`, per process.

    ``calls``: ``is_equivalent`` calls; ``equivalent``: those that returned True;
    ``timeouts``: calls that hit the time limit (scored not-equivalent); ``pred_parse_failures`` /
    ``gold_parse_failures``: sides that were empty or that math-verify could not turn into a
    sympy object (then only string comparison was possible; timeouts are not counted here);
    ``errors``: exceptions caught inside the verifier;
    ``worker_restarts``: worker processes replaced after a hang or a crash; ``cache_hits``: calls
    answered from the result cache; ``string_matches``: calls decided by normalised string
    equality without math-verify; ``unguarded_calls``: calls that ran in-process without a time
    limit because no worker process could be started; ``reward_calls``: reward-function calls
    made by ``batch_rewards``; ``seconds``: wall time spent inside ``is_equivalent``.
    """

    calls: int = 0
    equivalent: int = 0
    timeouts: int = 0
    pred_parse_failures: int = 0
    gold_parse_failures: int = 0
    errors: int = 0
    worker_restarts: int = 0
    cache_hits: int = 0
    string_matches: int = 0
    unguarded_calls: int = 0
    reward_calls: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add ``deltas`` (counter name -> increment) atomically."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def snapshot(self) -> dict[str, float]:
        """The counters as a plain dict (JSON-ready)."""
        with self._lock:
            return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            for f in fields(self):
                if not f.name.startswith("_"):
                    setattr(self, f.name, type(getattr(self, f.name))(0))

    @staticmethod
    def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
        """Counter increments between two snapshots (what one evaluation or step did)."""
        return {k: after[k] - before.get(k, 0) for k in after}


verifier_stats = VerifierStats()
"""The process-wide counters every verifier call updates."""


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay locked forever in the child.
    verifier_stats._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
