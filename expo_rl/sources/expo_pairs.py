"""``expo_pairs``: ExP-DPO preference pairs (SPEC 3.4, ExPO paper section 5.1).

For each question drawn: chosen ``o+`` = the self-explanation followed by ``a*`` (or, for the
baseline, the expert solution ``c_E`` followed by ``a*``), rejected ``o-`` = one of the policy's
own samples for the plain prompt (``sources.preference.pick_rejected``): ``rejected: any`` takes
the first sample, correct or not (c- ~ pi_ref(.|q), the paper); ``prefer_incorrect`` an
incorrect one when there is one; ``incorrect_only`` skips questions where every sample is
correct. Length-capped samples (stopped by ``max_new_tokens``, ``Row.finished`` False) are not
rejected candidates unless ``rejected_unfinished: true``: measured on the demo, truncated
rejecteds drive DPO's collapse (the rejected log-prob falls by far more than the chosen rises).
Both are trained under the plain prompt with the ``dpo`` coefficient.

* Offline (``refresh_every: 0``): chosen and rejected come from the frozen initial policy
  ``pi_ref``, generated when a question is first drawn and cached (explanations in
  ``<output_dir>/cache/<term>.jsonl``, own samples in ``<term>.samples.jsonl``).
* Online (``refresh_every: N``): after every N steps both are regenerated from the current
  policy ``pi_theta^i`` (iterative ExP-DPO). The reference stays the initial policy (SPEC 3.4)
  unless ``refresh_reference: true``: at each regeneration after the first the source asks the
  env to make pi_ref a snapshot of the current policy (``SourceEnv.refresh_reference``; iterative
  DPO with ``pi_ref = pi_theta^i``), which the runtime's reference log-probs use from that step on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from expo_rl.data.records import Problem
from expo_rl.expo.bank import refresh_generation, regenerates_at
from expo_rl.sources.base import (
    Row,
    SourceEnv,
    StepContext,
    encode,
    local_share,
    problem_fields,
    question_prompt_ids,
    register_source,
    rows_from_samples,
    step_seed,
)
from expo_rl.sources.cursor import Cursor, CursorState
from expo_rl.sources.explanations import ExplanationOptions, Explanations, _help
from expo_rl.sources.frozen import cache_path, sample_once
from expo_rl.sources.preference import RejectedRule, pick_rejected

__all__ = ["ExpoPairs", "ExpoPairsOptions", "build_expo_pairs", "pick_rejected"]


@dataclass
class ExpoPairsOptions(ExplanationOptions):
    """``explanations`` options plus how the rejected sample is chosen; ``questions_per_step`` is
    the number of pairs per step (questions without a usable pair give none)."""

    rejected_samples: int = _help("own samples drawn per question to pick the rejected one from", default=4)
    rejected: RejectedRule = _help(
        "which own sample is rejected: an incorrect one if any (else the first), only incorrect "
        "ones (else no pair), or any (the first, correct or not: the paper)", default="prefer_incorrect")
    rejected_unfinished: bool = _help("length-capped (unfinished) own samples may be rejected", default=False)
    refresh_reference: bool = _help("online: the reference becomes a snapshot of the current policy at every "
                                    "regeneration (default: it stays the initial policy)", default=False)


class ExpoPairs(CursorState):
    def __init__(self, problems: list[Problem], options: ExpoPairsOptions, env: SourceEnv) -> None:
        if options.rejected_samples < 1:
            raise ValueError("source option rejected_samples must be >= 1")
        if options.refresh_reference and options.refresh_every < 1:
            raise ValueError("source option refresh_reference: true needs refresh_every >= 1 (the online "
                             "variant); offline pairs keep the initial policy as the reference")
        self.problems, self.options, self.env = problems, options, env
        self.chosen = Explanations(problems, options, env)  # reuses its bank/expert logic
        self.cursor = Cursor(len(problems), seed=env.seed, shuffle=options.shuffle)
        self.own: dict[str, tuple[int, list[Row]]] = {}
        self.skipped = {"no_chosen": 0, "no_rejected": 0, "rejected_correct": 0}
        self.reference_refreshes = 0

    @property
    def samples_current_policy(self) -> bool:
        return self.options.refresh_every > 0

    def prepare(self, env: SourceEnv) -> None:
        self.chosen.prepare(env)

    def _own_samples(self, problems: list[Problem], ctx: StepContext) -> None:
        """Fill ``self.own`` for ``problems`` whose samples are missing or from a past generation."""
        generation = refresh_generation(ctx.step, self.options.refresh_every)
        stale = [p for p in problems if self.own.get(p.id, (None,))[0] != generation]
        if not stale:
            return
        if self.options.refresh_every == 0:
            path = cache_path(self.options.cache, self.env)
            if path is not None:
                path = Path(path).with_suffix(".samples.jsonl")
                if self.env.world_size > 1:
                    path = path.with_name(f"{path.stem}.rank{self.env.rank}{path.suffix}")
            per_problem = _sample_once_local(stale, self.options.rejected_samples, self.env, path)
        else:
            batch = self.env.sample(ctx.policy, [self.env.prompt(p) for p in stale],
                                    n=self.options.rejected_samples,
                                    seed=step_seed(self.env.seed, ctx.step, self.env.rank, salt=13))
            rows = rows_from_samples(batch, stale)
            self.env.score(rows)
            per_problem = [[r for r in rows if r.problem_id == p.id] for p in stale]
        for problem, rows in zip(stale, per_problem):
            self.own[problem.id] = (generation, rows)

    def _maybe_refresh_reference(self, ctx: StepContext) -> None:
        if not (self.options.refresh_reference and self.options.refresh_every > 0):
            return
        if ctx.step > 1 and regenerates_at(ctx.step, self.options.refresh_every):
            if self.env.refresh_reference is None:
                raise ValueError(f"{self.env.name}: refresh_reference: true, but this run offers no "
                                 f"reference to refresh (SourceEnv.refresh_reference is None)")
            self.env.refresh_reference(ctx.policy)
            self.reference_refreshes += 1

    def next_rows(self, ctx: StepContext) -> list[Row]:
        self._maybe_refresh_reference(ctx)
        indices = local_share(self.cursor.take(self.options.questions_per_step), self.env)
        problems = [self.problems[i] for i in indices]
        texts: dict[str, list[str]] = {}
        bank = self.chosen.bank
        if bank is not None:
            bank.get(problems, ctx.step, self.chosen._policy(ctx),
                     seed=step_seed(self.env.seed, ctx.step, self.env.rank, salt=11))
            texts = {p.id: [e.positive for e in bank.usable(p.id)] for p in problems}
        with_chosen = []
        for problem in problems:
            chosen = self.chosen.positives(problem, texts, ctx.step)
            if chosen:
                with_chosen.append((problem, chosen[0]))
            else:
                self.skipped["no_chosen"] += 1
        self._own_samples([p for p, _ in with_chosen], ctx)
        rows: list[Row] = []
        for problem, text in with_chosen:
            rejected = pick_rejected(self.own[problem.id][1], self.options.rejected,
                                     unfinished=self.options.rejected_unfinished)
            if rejected is None:
                self.skipped["no_rejected"] += 1
                continue
            self.skipped["rejected_correct"] += bool((rejected.reward or 0.0) > 0)
            pair = len(rows) // 2
            rows.append(Row(
                prompt_ids=question_prompt_ids(self.env, problem),
                completion_ids=encode(self.env.tokenizer, text, eos=True), problem_id=problem.id,
                reference=problem.answer, completion=text, reward=1.0, pair=pair, pair_sign=1,
                fields={**problem_fields(problem), "expo_target": self.options.target},
            ))
            rows.append(Row(**{**asdict(rejected), "pair": pair, "pair_sign": -1, "group": -1}))
        return rows

    def metrics(self) -> dict[str, float]:
        stats = self.chosen.metrics()
        stats.pop("explain/skipped_no_explanation", None)
        stats.update({f"pairs/skipped_{k}": float(v) for k, v in self.skipped.items()})
        stats["pairs/reference_refreshes"] = float(self.reference_refreshes)
        return stats


def _sample_once_local(problems: list[Problem], n: int, env: SourceEnv, path: Path | None) -> list[list[Row]]:
    """``sample_once`` on this process only (each process samples the questions it drew)."""
    local = SourceEnv(**{**env.__dict__, "rank": 0, "world_size": 1, "gather": lambda objs: objs,
                         "show_progress": False})
    return sample_once(problems, n, local, path)


@register_source("expo_pairs", ExpoPairsOptions)
def build_expo_pairs(problems: list[Problem], options: ExpoPairsOptions, env: SourceEnv) -> ExpoPairs:
    """ExP-DPO pairs: chosen = self-explanation (or expert) + a*, rejected = an own (incorrect) sample."""
    return ExpoPairs(problems, options, env)
