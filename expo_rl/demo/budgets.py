"""Named budgets of ``expo-rl demo``: how many steps, questions and samples each run uses.

``default`` is sized for <= 15 minutes on 2 CPU cores (one seed, three methods), ``quick`` for
<= 3 minutes, ``full`` adds the refreshed ExP-GRPO and the DPO grid, ``tiny`` (hidden from
``--help``) is for tests. Training mixes levels (the feasibility study saw forgetting of the
easy levels when training on level 5 only); the mix is per step: ``mix[level]`` questions.
"""

from __future__ import annotations

from dataclasses import dataclass

from expo_rl.demo.model import ModelSize
from expo_rl.registry import Registry


@dataclass(frozen=True)
class Budget:
    name: str
    steps: int
    mix: dict[int, int]
    eval_per_level: int
    eval_samples: int = 8
    curve_every: int = 0            # held-out learning-curve points every N steps (eval.every; 0: none)
    curve_questions: int = 0        # ... on this many held-out questions per level (eval.limit)
    curve_samples: int = 4          # ... with this many samples each (eval.n)
    diagnostic_questions: int = 64
    refresh_every: int = 20
    group_size: int = 8             # G samples per training question (GRPO family)
    explanation_tries: int = 4      # hinted samples per question for a self-explanation
    base_steps: int = 1500          # SFT updates when a base model has to be built
    base_batch: int = 128
    base_size: ModelSize = ModelSize()

    @property
    def questions_per_step(self) -> int:
        return sum(self.mix.values())


BUDGETS: Registry[Budget] = Registry("demo budget")
BUDGETS.update({
    "tiny": Budget("tiny", steps=3, mix={1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, eval_per_level=4,
                   diagnostic_questions=4, refresh_every=2, base_steps=20, base_batch=16,
                   base_size=ModelSize(hidden=32, layers=2, heads=2, intermediate=64)),
    "quick": Budget("quick", steps=10, mix={1: 1, 2: 1, 3: 1, 4: 1, 5: 4}, eval_per_level=24,
                    diagnostic_questions=16, refresh_every=5, base_steps=300),
    # 32 questions x G = 4 per step (128 rollouts): more hard questions per step for the same
    # sampling cost, since a level-5 self-explanation teaches one entry of a table mod 17.
    "default": Budget("default", steps=120, mix={1: 2, 2: 2, 3: 2, 4: 4, 5: 22}, eval_per_level=64,
                      curve_every=20, curve_questions=8, diagnostic_questions=64, refresh_every=20,
                      group_size=4, explanation_tries=2),
    "full": Budget("full", steps=120, mix={1: 2, 2: 2, 3: 2, 4: 4, 5: 22}, eval_per_level=64,
                   curve_every=20, curve_questions=8, diagnostic_questions=64, refresh_every=20,
                   group_size=4, explanation_tries=2),
})


def get_budget(name: str) -> Budget:
    return BUDGETS.get(name)


def scaled_mix(mix: dict[int, int], levels: tuple[int, ...]) -> list[int]:
    """The budget's per-level mix mapped onto a task's levels (by rank: easiest -> easiest), as
    ``data.task_mix`` takes it: one count per level, easiest first."""
    ordered = sorted(levels)
    keys = sorted(mix)
    if len(ordered) == len(keys):
        return [mix[key] for key in keys]
    total = sum(mix.values())
    return [max(1, total // len(ordered))] * len(ordered)
