"""Several rewards per loss term, with weights: ``r = sum_k w_k * r_k`` (each ``r_k`` kept for the log).

A :class:`WeightedReward` holds named parts ``(label, fn, weight)``; :meth:`WeightedReward.score`
returns the weighted totals and every part's values, so the runtime can log
``<term>/reward/<label>`` beside the term's reward. One part with weight 1 is the plain
single-reward case.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expo_rl.verify.rewards import RewardFn, batch_rewards


@dataclass(frozen=True)
class RewardPart:
    """One weighted reward: ``label`` names it in the log, ``fn(completion, reference, **fields)``."""

    label: str
    fn: RewardFn
    weight: float = 1.0


class WeightedReward:
    """``sum_k weight_k * fn_k(completion, reference, **fields)`` over labelled parts."""

    def __init__(self, parts: Sequence[RewardPart]) -> None:
        if not parts:
            raise ValueError("a weighted reward needs at least one part")
        labels = [p.label for p in parts]
        if len(set(labels)) != len(labels):
            raise ValueError(f"reward labels must differ (got {labels}); give repeated rewards a label")
        self.parts = list(parts)

    def __call__(self, completion: str, reference: str, **fields: Any) -> float:
        return sum(p.weight * float(p.fn(completion, reference, **fields)) for p in self.parts)

    def score(self, completions: Sequence[str], references: Sequence[str],
              rows: Sequence[dict[str, Any]] | None = None
              ) -> tuple[list[float], dict[str, list[float]]]:
        """(weighted totals, ``{label: values}``) for a batch, each part through ``batch_rewards``."""
        values = {p.label: batch_rewards(p.fn, completions, references, rows) for p in self.parts}
        totals = [sum(p.weight * values[p.label][i] for p in self.parts) for i in range(len(completions))]
        return totals, values


def with_args(fn: RewardFn, args: dict[str, Any] | None) -> RewardFn:
    """``fn`` with keyword arguments bound (a reward's ``args`` in the config)."""
    if not args:
        return fn
    bound = functools.partial(fn, **args)
    functools.update_wrapper(bound, fn)
    return bound
