"""Held-out evaluation of the demo: pass@1 and pass@k per level (SPEC section 4).

``n`` samples per question at temperature T; pass@k uses the unbiased estimator
``1 - C(n-c, k) / C(n, k)`` (``expo_rl.eval.pass_at_k``) averaged over the level's questions
(with ``n == k`` it is the fraction of questions with at least one correct sample).
"""

from __future__ import annotations

from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.rollouts import sample_rows
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.eval.passk import pass_at_k


def evaluate_levels(model: Any, tokenizer: Any, task: DemoTask, held_out: dict[int, list[Problem]],
                    *, n: int, ks: tuple[int, ...], temperature: float, seed: int,
                    progress: Any | None = None) -> dict[int, dict[str, float]]:
    """``{level: {"pass@k": value for k in ks}}`` over ``held_out[level]``; ``progress`` (a
    tqdm bar) is advanced by one per level."""
    results: dict[int, dict[str, float]] = {}
    for level, problems in sorted(held_out.items()):
        rows = sample_rows(model, tokenizer, task, problems, n=n, temperature=temperature,
                           seed=seed + 7919 * level)
        correct = [0] * len(problems)
        for row in rows:
            correct[row.group] += int(row.reward == 1.0)
        results[level] = {f"pass@{k}": sum(pass_at_k(n, c, k) for c in correct) / len(problems)
                          for k in ks}
        if progress is not None:
            progress.update(1)
    return results
