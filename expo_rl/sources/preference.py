"""``preference_pairs``: (q, o+, o-) pairs for DPO (SPEC 2.3).

Either read from a JSONL file of ``{"question", "chosen", "rejected"[, "answer", "id"]}`` rows,
or built once from frozen-model samples (``samples_per_question`` outputs per question, cached
as in ``frozen_samples``): o+ is a correct sample and o- an incorrect one ("rule for math");
with ``chosen: solution`` o+ is the expert solution c_E instead (the ExPO paper's expert-CoT
baseline, and the only way to get pairs from a model that is never right). ``rejected`` says
which own sample is o- (:func:`pick_rejected`: ``incorrect_only``, the default here,
``prefer_incorrect``, or ``any`` = the first sample, c- ~ pi_ref(.|q) as the ExPO paper);
length-capped (unfinished) samples are o- only with ``rejected_unfinished: true``. Questions
without a pair are counted. Each step takes
``pairs_per_step`` pairs (over all processes); o+ and o- of a pair share ``Row.pair`` and carry
``pair_sign`` +1 / -1, and a pair never straddles two processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from expo_rl.data.jsonl import read_json_lines
from expo_rl.data.records import Problem
from expo_rl.sources.base import (
    Row,
    SourceEnv,
    StepContext,
    encode,
    local_share,
    problem_fields,
    question_prompt_ids,
    register_source,
)
from expo_rl.sources.cursor import Cursor, CursorState
from expo_rl.sources.frozen import cache_path, sample_once

RejectedRule = Literal["prefer_incorrect", "incorrect_only", "any"]
REJECTED_RULES = get_args(RejectedRule)


def pick_rejected(rows: list[Row], rule: str, *, unfinished: bool = False,
                  exclude: Row | None = None) -> Row | None:
    """The rejected o- among a question's own samples (in sampling order), or None.

    ``any``: the first sample, correct or not: a draw from the sampling policy, c- ~ pi(.|q)
    (the ExPO paper, SPEC 3.4); ``prefer_incorrect``: the first incorrect sample (reward <= 0),
    else the first; ``incorrect_only``: the first incorrect sample, else none. Length-capped
    samples (``Row.finished`` False) are candidates only with ``unfinished``; ``exclude`` (the
    chosen row, when it is one of the samples) never is.
    """
    if rule not in REJECTED_RULES:
        raise ValueError(f"rejected: {rule!r} is not allowed; allowed values: {', '.join(REJECTED_RULES)}")
    candidates = [r for r in rows if r is not exclude and (unfinished or r.finished)]
    if rule == "any":
        return candidates[0] if candidates else None
    wrong = [r for r in candidates if not (r.reward or 0.0) > 0]
    if wrong:
        return wrong[0]
    return candidates[0] if rule == "prefer_incorrect" and candidates else None


@dataclass
class PreferencePairsOptions:
    pairs_per_step: int = field(default=4, metadata={"help": "(o+, o-) pairs per training step, over all processes"})
    path: str | None = field(default=None, metadata={"help": "JSONL of {question, chosen, rejected[, answer, id]}; unset: build from frozen-model samples"})
    chosen: Literal["sample", "solution"] = field(default="sample", metadata={"help": "o+: a correct frozen-model sample, or the expert solution"})
    samples_per_question: int = field(default=4, metadata={"help": "frozen-model samples per question when building pairs"})
    rejected: RejectedRule = field(default="incorrect_only", metadata={"help": "o- among the samples: only an incorrect one (else no pair), an incorrect one if any (else the first), or any (the first)"})
    rejected_unfinished: bool = field(default=False, metadata={"help": "length-capped (unfinished) samples may be o-"})
    cache: str | None = field(default=None, metadata={"help": "JSONL cache of the samples (default <output_dir>/cache/<term>.jsonl)"})
    questions_per_call: int = field(default=8, metadata={"help": "questions per generation call"})
    shuffle: bool = field(default=True, metadata={"help": "reshuffle the pairs every epoch"})


def read_preference_file(path: str, env: SourceEnv) -> list[tuple[Row, Row]]:
    """(chosen, rejected) rows from a JSONL file; errors name the file and line."""
    pairs = []
    for line_no, record in read_json_lines(path):
        try:
            problem = Problem(id=str(record.get("id", line_no)), question=record["question"],
                              answer=str(record.get("answer", "")))
            texts = (record["chosen"], record["rejected"])
        except (AttributeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}:{line_no}: expected a JSON object with 'question', "
                             f"'chosen' and 'rejected' ({error})") from None
        prompt_ids = question_prompt_ids(env, problem)
        pairs.append(tuple(
            Row(prompt_ids=prompt_ids, completion_ids=encode(env.tokenizer, text, eos=True),
                problem_id=problem.id, reference=problem.answer, completion=text,
                fields=problem_fields(problem))
            for text in texts))
    return pairs


def pairs_from_samples(per_problem: list[list[Row]], solutions: list[Row | None] | None = None, *,
                       rejected: str = "incorrect_only", unfinished: bool = True) -> list[tuple[Row, Row]]:
    """(o+, o-) per question: the first correct sample (or the given expert-solution row) and
    the sample :func:`pick_rejected` picks under ``rejected`` / ``unfinished`` among the others;
    reward > 0 counts as correct."""
    pairs = []
    for i, rows in enumerate(per_problem):
        correct = [r for r in rows if (r.reward or 0.0) > 0]
        if solutions is not None:
            correct = [solutions[i]] if solutions[i] is not None else []
        if not correct:
            continue
        other = pick_rejected(rows, rejected, unfinished=unfinished, exclude=correct[0])
        if other is not None:
            pairs.append((correct[0], other))
    return pairs


def solution_row(problem: Problem, env: SourceEnv) -> Row | None:
    """The expert solution as a completion under the plain prompt (None when there is none)."""
    if not problem.solution.strip():
        return None
    return Row(prompt_ids=question_prompt_ids(env, problem),
               completion_ids=encode(env.tokenizer, problem.solution, eos=True),
               problem_id=problem.id, reference=problem.answer, completion=problem.solution,
               reward=1.0, fields=problem_fields(problem))


class PreferencePairs(CursorState):
    def __init__(self, problems: list[Problem], options: PreferencePairsOptions, env: SourceEnv):
        self.problems, self.options, self.env = problems, options, env
        self.pairs: list[tuple[Row, Row]] = []
        self.cursor: Cursor | None = None
        self.questions_without_pair = 0

    def prepare(self, env: SourceEnv) -> None:
        if self.options.path:
            self.pairs = read_preference_file(self.options.path, env)
        else:
            per_problem = sample_once(self.problems, self.options.samples_per_question, env,
                                      cache_path(self.options.cache, env),
                                      questions_per_call=self.options.questions_per_call)
            solutions = ([solution_row(p, env) for p in self.problems]
                         if self.options.chosen == "solution" else None)
            self.pairs = pairs_from_samples(per_problem, solutions, rejected=self.options.rejected,
                                            unfinished=self.options.rejected_unfinished)
            self.questions_without_pair = len(per_problem) - len(self.pairs)
        if not self.pairs:
            raise ValueError(f"{env.name}: no preference pairs (no question had both a chosen and a "
                             f"rejected sample (rejected={self.options.rejected}, rejected_unfinished="
                             f"{self.options.rejected_unfinished}) among {self.options.samples_per_question}); "
                             f"use more samples, easier questions, or a pairs file (path)")
        self.cursor = Cursor(len(self.pairs), seed=env.seed, shuffle=self.options.shuffle)

    def next_rows(self, ctx: StepContext) -> list[Row]:
        if self.cursor is None:
            raise RuntimeError("preference_pairs: prepare() must run before next_rows()")
        rows = []
        for local, index in enumerate(local_share(self.cursor.take(self.options.pairs_per_step), self.env)):
            for sign, row in zip((1, -1), self.pairs[index]):
                rows.append(Row(**{**row.__dict__, "pair": local, "pair_sign": sign, "group": -1}))
        return rows


@register_source("preference_pairs", PreferencePairsOptions)
def build_preference_pairs(problems: list[Problem], options: PreferencePairsOptions,
                           env: SourceEnv) -> PreferencePairs:
    """(q, o+, o-) pairs from a file or from frozen-model samples: correct vs incorrect (DPO)."""
    return PreferencePairs(problems, options, env)
