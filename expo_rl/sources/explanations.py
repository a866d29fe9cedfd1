"""``explanations``: positive samples ``(q, c~, a*)`` for the ExP-SFT term (SPEC 3.5, ExPO paper eq. 9).

ExP-GRPO is GRPO plus ``lambda * log pi(c~, a* | q)``: a second loss term whose rows come from
this source and whose coefficient is ``sft`` with weight ``lambda``. Each row is the plain
prompt ``q`` and the completion ``c~`` followed by ``a*`` in the task's answer format (and EOS).

* ``target: self_explanation`` (ExPO): ``c~ ~ pi(. | q, hint)`` from ``expo_rl.expo``;
  ``refresh_every: 0`` generates them from the frozen initial policy (the paper; cached in
  ``<output_dir>/cache/<term>.jsonl``), ``refresh_every: N`` regenerates them from the current
  policy every N steps (the online variant; see ``expo_rl.expo.bank``).
* ``target: expert``: the expert solution ``c_E`` followed by ``a*`` (the "GRPO SFT-GT-CoT"
  baseline), no generation.

Questions: the source walks the problems with the same seeded cursor as ``on_policy``, so with
the same ``questions_per_step`` as the GRPO term both terms see the same questions each step
(the ExP-SFT term is on the GRPO batch's questions, as in eq. 9). Questions without a usable
explanation contribute no row (counted in ``explain/*`` metrics) but still count in the term's
normaliser: the source reports ``step_samples() = questions drawn x rows_per_question`` (this
process's share), which the step divides the summed log-likelihood by, so lambda's effective
size is the same at every step (``expo_rl.core.coefficients.exp_sft``).

``only_zero_signal: true`` (beyond the paper) keeps a question's explanation rows only when the
rows of the term named ``signal_term`` for that question this step had no correct sample
(``reward > 0`` counts as correct), i.e. where GRPO has no positive signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from expo_rl.data.records import Problem
from expo_rl.expo.answer_format import expert_positive, resolve_task
from expo_rl.expo.bank import ExplanationBank, bank_generator
from expo_rl.expo.explanations import ExplainConfig
from expo_rl.expo.hints import HintOptions
from expo_rl.expo.task_explanations import TaskAccept, task_explanation_generator
from expo_rl.sources.base import (
    Row,
    SourceEnv,
    StepContext,
    encode,
    local_share,
    problem_fields,
    question_prompt_ids,
    register_source,
    step_seed,
)
from expo_rl.sources.cache_key import problem_keys
from expo_rl.sources.cursor import Cursor, CursorState
from expo_rl.sources.frozen import cache_path


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class ExplanationOptions:
    """Options of the ``explanations`` source (and the explanation half of ``expo_pairs``)."""

    questions_per_step: int = _help("questions per step over all processes (use the GRPO term's value)", default=4)
    rows_per_question: int = _help("explanation rows per question per step", default=1)
    target: Literal["self_explanation", "expert"] = _help(
        "positive sample: the self-explanation c~ (ExPO) or the expert solution c_E (SFT-GT-CoT)",
        default="self_explanation")
    refresh_every: int = _help("0: explanations once from the initial policy (offline); N: regenerate "
                               "from the current policy every N steps (online)", default=0)
    explanations_per_question: int = _help("explanations sampled per question per generation", default=2)
    hint: str = _help("hint source: answer (the paper) or answer_plus_expert_prefix", default="answer")
    hint_fraction: float = _help("share of the expert solution given by answer_plus_expert_prefix", default=0.5)
    task: str = _help("task of the templates and answer format: auto, math or gsm8k", default="auto")
    answer_format: str | None = _help("answer format after the explanation (default: the task's)", default=None)
    on_mismatch: Literal["drop", "repair"] = _help(
        "explanations whose answer contradicts a*: drop, or repair (answer replaced by a*)", default="drop")
    leak_policy: Literal["strip", "keep", "drop"] = _help(
        "sentences saying the answer was given: strip, keep (counted) or drop the explanation", default="strip")
    only_zero_signal: bool = _help("train on explanations only for questions whose signal_term group had "
                                   "no correct sample this step", default=False)
    signal_term: str = _help("the term whose rewards decide only_zero_signal (the GRPO term's name)", default="grpo")
    cache: str | None = _help("JSONL cache of offline explanations (default <output_dir>/cache/<term>.jsonl)",
                              default=None)
    pregenerate: bool = _help("generate every question's explanations before step 1 (default: when first drawn)",
                              default=False)
    questions_per_call: int = _help("questions per generation call", default=8)
    accept: TaskAccept = _help("task runs: an explanation is usable when its answer is right (answer, the "
                               "paper) or every step is (trace: the task's check_trace)", default="answer")
    shuffle: bool = _help("reshuffle the questions every epoch", default=True)


def explain_config(options: Any) -> ExplainConfig:
    """The ``ExplainConfig`` of a source's options (sampling settings come from the run)."""
    return ExplainConfig(
        hint=options.hint, hint_options=HintOptions(fraction=options.hint_fraction), task=options.task,
        answer_format=options.answer_format, on_mismatch=options.on_mismatch,
        leak_policy=options.leak_policy,
    )


def make_bank(options: Any, env: SourceEnv, problems: list[Problem] | None = None) -> ExplanationBank:
    """The explanation bank of a source: sampled with the run's sampler, cached when offline, its
    cached records keyed by ``env.cache_context`` and each of ``problems`` (sources.cache_key)."""
    config = explain_config(options)

    def sampler(model: Any, prompts: list[str], *, n: int, seed: int | None) -> Any:
        return env.sample(model, prompts, n=n, seed=seed)

    path = cache_path(options.cache, env)
    if path is not None and env.world_size > 1:
        # one file per process: appends from several processes never interleave
        path = path.with_name(f"{path.stem}.rank{env.rank}{path.suffix}")
    if env.task is not None:  # the task writes the hinted prompt and judges the explanation
        generate = task_explanation_generator(env.task, sampler, per_question=options.explanations_per_question,
                                              accept=options.accept)
    else:
        generate = bank_generator(env.tokenizer, config, options.explanations_per_question, sampler,
                                  questions_per_call=options.questions_per_call)
    bank = ExplanationBank(
        config=config, per_question=options.explanations_per_question, every=options.refresh_every,
        generate=generate,
        cache=path if options.refresh_every == 0 else None,
        keys=problem_keys(env.cache_context, problems) if problems is not None else None,
    )
    bank.load_cache()
    return bank


def zero_signal_questions(rows: list[Row]) -> set[str]:
    """Problem ids among ``rows`` with no correct sample (``reward > 0``) in any of their rows."""
    correct = {r.problem_id for r in rows if (r.reward or 0.0) > 0}
    return {r.problem_id for r in rows} - correct


def earlier_rows(ctx: StepContext, term: str) -> list[Row]:
    """The scored rows term ``term`` produced earlier in this step (``ctx.rows``)."""
    if term not in ctx.rows:
        known = ", ".join(ctx.rows) or "none"
        raise ValueError(f"only_zero_signal needs the scored rows of term {term!r} earlier in the step "
                         f"(terms before this one: {known}); set source_args.signal_term to the GRPO "
                         f"term's name and list that term first")
    return ctx.rows[term]


class Explanations(CursorState):
    def __init__(self, problems: list[Problem], options: ExplanationOptions, env: SourceEnv) -> None:
        if options.rows_per_question < 1 or options.explanations_per_question < 1:
            raise ValueError("source options rows_per_question and explanations_per_question must be >= 1")
        if options.refresh_every < 0:
            raise ValueError("source option refresh_every must be >= 0 (0 = offline)")
        self.problems, self.options, self.env = problems, options, env
        self.cursor = Cursor(len(problems), seed=env.seed, shuffle=options.shuffle)
        self.bank: ExplanationBank | None = None
        self.skipped_no_explanation = 0
        self.skipped_has_signal = 0
        self.drawn = 0  # questions drawn by the last next_rows on this process

    @property
    def samples_current_policy(self) -> bool:
        return self.options.target == "self_explanation" and self.options.refresh_every > 0

    def step_samples(self) -> int:
        """Samples of the ExP-SFT expectation behind the last ``next_rows``: every question drawn,
        with or without a row, times ``rows_per_question`` (module docstring)."""
        return self.drawn * self.options.rows_per_question

    def prepare(self, env: SourceEnv) -> None:
        if self.options.target == "self_explanation":
            self.bank = make_bank(self.options, env, self.problems)
            if self.options.pregenerate:
                mine = self.problems[env.rank::env.world_size]
                self.bank.get(mine, 1, self._policy(None), seed=step_seed(env.seed, 0, env.rank, salt=7))

    def _policy(self, ctx: StepContext | None) -> Any:
        """Offline explanations come from the frozen initial policy, online ones from the current one."""
        if self.options.refresh_every == 0 or ctx is None:
            return self.env.frozen_policy()
        return ctx.policy

    def positives(self, problem: Problem, texts: dict[str, list[str]], step: int) -> list[str]:
        """The ``rows_per_question`` positive texts of ``problem`` for this step (cycled)."""
        if self.options.target == "expert" and self.env.task is not None:
            available = [self.env.task.expert_solution(problem)]
        elif self.options.target == "expert":
            fmt = explain_config(self.options).format_for(resolve_task(self.options.task, problem))
            available = [expert_positive(problem, fmt)] if problem.solution.strip() else []
        else:
            available = texts.get(problem.id, [])
        if not available:
            return []
        return [available[(step + k) % len(available)] for k in range(self.options.rows_per_question)]

    def next_rows(self, ctx: StepContext) -> list[Row]:
        indices = local_share(self.cursor.take(self.options.questions_per_step), self.env)
        problems = [self.problems[i] for i in indices]
        self.drawn = len(problems)
        if self.options.only_zero_signal:
            allowed = zero_signal_questions(earlier_rows(ctx, self.options.signal_term))
            self.skipped_has_signal += sum(p.id not in allowed for p in problems)
            problems = [p for p in problems if p.id in allowed]
        texts: dict[str, list[str]] = {}
        if self.bank is not None and problems:
            self.bank.get(problems, ctx.step, self._policy(ctx),
                          seed=step_seed(self.env.seed, ctx.step, self.env.rank, salt=11))
            texts = {p.id: [e.positive for e in self.bank.usable(p.id)] for p in problems}
        rows = []
        for problem in problems:
            chosen = self.positives(problem, texts, ctx.step)
            self.skipped_no_explanation += not chosen
            prompt_ids = question_prompt_ids(self.env, problem)
            for text in chosen:
                rows.append(Row(
                    prompt_ids=prompt_ids, completion_ids=encode(self.env.tokenizer, text, eos=True),
                    problem_id=problem.id, reference=problem.answer, completion=text,
                    fields={**problem_fields(problem), "expo_target": self.options.target},
                ))
        return rows

    def metrics(self) -> dict[str, float]:
        """Explanation acceptance since the last call and the skip counters (for the step's log)."""
        stats = self.bank.pop_stats() if self.bank is not None else {}
        stats["explain/skipped_no_explanation"] = float(self.skipped_no_explanation)
        if self.options.only_zero_signal:
            stats["explain/skipped_has_signal"] = float(self.skipped_has_signal)
        return stats


@register_source("explanations", ExplanationOptions)
def build_explanations(problems: list[Problem], options: ExplanationOptions, env: SourceEnv) -> Explanations:
    """Positive samples (q, c~ + a*) for the ExP-SFT term: self-explanations or expert solutions."""
    return Explanations(problems, options, env)
