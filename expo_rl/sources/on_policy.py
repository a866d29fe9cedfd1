"""``on_policy``: G outputs per question sampled from the current policy every step (SPEC 2.2, 2.4,
2.5: online RFT, PPO, GRPO).

Each step takes ``questions_per_step`` questions (over all processes); each process samples
``group_size`` outputs for each of its questions with a seed fixed by (run seed, step, process),
so a resumed run draws exactly the samples the uninterrupted run drew. The G outputs of one
question form one group (``Row.group``), the unit of GRPO's advantage normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from expo_rl.data.records import Problem
from expo_rl.sources.base import (
    Row,
    SourceEnv,
    StepContext,
    local_share,
    register_source,
    rows_from_samples,
    step_seed,
)
from expo_rl.sources.cursor import Cursor, CursorState


@dataclass
class OnPolicyOptions:
    questions_per_step: int = field(default=4, metadata={"help": "questions per training step, over all processes"})
    group_size: int = field(default=4, metadata={"help": "G: outputs sampled per question"})
    shuffle: bool = field(default=True, metadata={"help": "reshuffle the questions every epoch"})


class OnPolicy(CursorState):
    samples_current_policy = True

    def __init__(self, problems: list[Problem], options: OnPolicyOptions, env: SourceEnv) -> None:
        if options.group_size < 1:
            raise ValueError("source option group_size must be >= 1")
        self.problems, self.options, self.env = problems, options, env
        self.cursor = Cursor(len(problems), seed=env.seed, shuffle=options.shuffle)

    def prepare(self, env: SourceEnv) -> None:
        pass

    def next_rows(self, ctx: StepContext) -> list[Row]:
        indices = local_share(self.cursor.take(self.options.questions_per_step), self.env)
        problems = [self.problems[i] for i in indices]
        batch = self.env.sample(ctx.policy, [self.env.prompt(p) for p in problems],
                                n=self.options.group_size,
                                seed=step_seed(self.env.seed, ctx.step, self.env.rank))
        return rows_from_samples(batch, problems)


@register_source("on_policy", OnPolicyOptions)
def build_on_policy(problems: list[Problem], options: OnPolicyOptions, env: SourceEnv) -> OnPolicy:
    """G outputs per question sampled from the current policy every step (online RFT, PPO, GRPO)."""
    return OnPolicy(problems, options, env)
