"""``on_policy``: G outputs per question sampled from the current policy every step (SPEC 2.2, 2.4,
2.5: online RFT, PPO, GRPO).

Each step takes ``questions_per_step`` questions (over all processes); each process samples
``group_size`` outputs for each of its questions with a seed fixed by (run seed, step, process),
so a resumed run draws exactly the samples the uninterrupted run drew. The G outputs of one
question form one group (``Row.group``), the unit of GRPO's advantage normalisation.

Dynamic sampling (DAPO section 3.2, ``dynamic_sampling: true``): the source scores its groups
itself and replaces every group whose rewards are all equal (no signal under group-normalised
advantages) by the group of another question, round after round, until none is left or
``max_resample`` extra questions (per process and step) have been drawn; groups still without
signal then stay in the batch. Replacement questions are a seeded draw that depends only on
(run seed, step, process, round), so resumed runs match. Logged per step as
``<term>/dynamic_resampled`` (extra questions drawn), ``<term>/dynamic_dropped`` (zero-signal
groups replaced) and ``<term>/dynamic_kept_zero_signal`` (left in when the budget ran out).
"""

from __future__ import annotations

import random
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
    dynamic_sampling: bool = field(default=False, metadata={
        "help": "DAPO dynamic sampling: replace groups whose rewards are all equal by new questions' groups"})
    max_resample: int = field(default=8, metadata={
        "help": "dynamic sampling budget: extra questions per process and step"})


class OnPolicy(CursorState):
    samples_current_policy = True

    def __init__(self, problems: list[Problem], options: OnPolicyOptions, env: SourceEnv) -> None:
        if options.group_size < 1:
            raise ValueError("source option group_size must be >= 1")
        if options.max_resample < 0:
            raise ValueError("source option max_resample must be >= 0")
        self.problems, self.options, self.env = problems, options, env
        self.cursor = Cursor(len(problems), seed=env.seed, shuffle=options.shuffle)
        self.counts = {"dynamic_resampled": 0, "dynamic_dropped": 0, "dynamic_kept_zero_signal": 0}

    def prepare(self, env: SourceEnv) -> None:
        pass

    def next_rows(self, ctx: StepContext) -> list[Row]:
        indices = local_share(self.cursor.take(self.options.questions_per_step), self.env)
        rows = self._sample([self.problems[i] for i in indices], ctx, salt=0, group_offset=0)
        return self._resample_zero_signal(rows, ctx) if self.options.dynamic_sampling else rows

    def _sample(self, problems: list[Problem], ctx: StepContext, *, salt: int, group_offset: int) -> list[Row]:
        batch = self.env.sample(ctx.policy, [self.env.prompt(p) for p in problems],
                                n=self.options.group_size,
                                seed=step_seed(self.env.seed, ctx.step, self.env.rank, salt))
        return rows_from_samples(batch, problems, group_offset=group_offset)

    def _resample_zero_signal(self, rows: list[Row], ctx: StepContext) -> list[Row]:
        """Replace zero-signal groups by fresh questions' groups, within the budget (module doc)."""
        budget, round_ = self.options.max_resample, 0
        self.env.score(rows)
        while True:
            flat = zero_signal_groups(rows)
            if not flat or budget == 0:
                self.counts["dynamic_kept_zero_signal"] += len(flat)
                return rows
            round_ += 1
            take = min(len(flat), budget)
            budget -= take
            drop = set(sorted(flat)[:take])
            rng = random.Random(step_seed(self.env.seed, ctx.step, self.env.rank, salt=10_000 + round_))
            picks = [self.problems[rng.randrange(len(self.problems))] for _ in range(take)]
            fresh = self._sample(picks, ctx, salt=round_, group_offset=max(r.group for r in rows) + 1)
            self.env.score(fresh)
            rows = [r for r in rows if r.group not in drop] + fresh
            self.counts["dynamic_resampled"] += take
            self.counts["dynamic_dropped"] += take

    def metrics(self) -> dict[str, float]:
        """Dynamic-sampling counts since the last call (empty when it is off)."""
        if not self.options.dynamic_sampling:
            return {}
        out = {k: float(v) for k, v in self.counts.items()}
        self.counts = dict.fromkeys(self.counts, 0)
        return out


def zero_signal_groups(rows: list[Row]) -> list[int]:
    """Ids of the groups of >= 2 scored rows whose rewards are all equal."""
    rewards: dict[int, list[float]] = {}
    for row in rows:
        if row.group >= 0 and row.reward is not None:
            rewards.setdefault(row.group, []).append(row.reward)
    return [g for g, values in rewards.items() if len(values) >= 2 and max(values) == min(values)]


@register_source("on_policy", OnPolicyOptions)
def build_on_policy(problems: list[Problem], options: OnPolicyOptions, env: SourceEnv) -> OnPolicy:
    """G outputs per question sampled from the current policy every step (online RFT, PPO, GRPO)."""
    return OnPolicy(problems, options, env)
