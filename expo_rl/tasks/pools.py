"""Question pools of a demo run: held-out evaluation sets per level and a disjoint training pool.

Both are drawn from the task's generator with fixed seeds, so every method (and every seed of
the demo) is trained on the same training questions in the same order and evaluated on exactly
the same held-out questions. A training question whose key (``task.problem_key``) equals a
held-out one is redrawn, so no held-out question is ever trained on. (The toy's equations come
from a finite table, so held-out questions share single equations with training questions; the
report says so.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from expo_rl.data.records import Problem
from expo_rl.tasks.base import DemoTask

EVAL_SEED = 10_007
TRAIN_SEED = 20_011


@dataclass(frozen=True)
class Pools:
    """``held_out[level]``: evaluation questions; ``train``: training questions in step order."""

    held_out: dict[int, list[Problem]]
    train: list[Problem]


def held_out_sets(task: DemoTask, per_level: int, *, seed: int = EVAL_SEED) -> dict[int, list[Problem]]:
    """``per_level`` distinct questions of every level (distinct as far as the level allows)."""
    rng = random.Random(seed)
    sets: dict[int, list[Problem]] = {}
    for level in task.levels:
        seen: set[str] = set()
        problems: list[Problem] = []
        for _ in range(per_level * 50):
            if len(problems) == per_level:
                break
            problem = task.make_problem(level, rng)
            key = task.problem_key(problem)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
        sets[level] = problems
    return sets


def training_pool(task: DemoTask, mix: dict[int, int], steps: int, held_out: dict[int, list[Problem]],
                  *, seed: int = TRAIN_SEED) -> list[Problem]:
    """``steps`` blocks of questions, block ``s`` holding ``mix[level]`` questions of each level
    (the questions of training step ``s``), none of them in ``held_out``."""
    unknown = sorted(set(mix) - set(task.levels))
    if unknown:
        raise ValueError(f"training mix: levels {unknown} are not levels of task {task.name!r} "
                         f"({task.levels})")
    rng = random.Random(seed)
    excluded = {task.problem_key(p) for problems in held_out.values() for p in problems}
    pool: list[Problem] = []
    for _ in range(steps):
        for level, count in sorted(mix.items()):
            for _ in range(count):
                problem = task.make_problem(level, rng)
                for _ in range(100):
                    if task.problem_key(problem) not in excluded:
                        break
                    problem = task.make_problem(level, rng)
                else:
                    raise ValueError(f"task {task.name!r}: level {level} has too few distinct "
                                     "questions to keep a training pool apart from the held-out set")
                pool.append(problem)
    return pool


def make_pools(task: DemoTask, *, eval_per_level: int, mix: dict[int, int], steps: int) -> Pools:
    held_out = held_out_sets(task, eval_per_level)
    return Pools(held_out, training_pool(task, mix, steps, held_out))
