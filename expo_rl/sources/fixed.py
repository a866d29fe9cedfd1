"""``fixed``: a fixed data set of (q, o) pairs (SFT, SPEC 2.1). o is the expert solution by default.

The completion ends with EOS so the model learns to stop. ``target`` picks o:
``solution`` (the data set's human solution c_E), or ``extra:<field>`` (any field the loader put in
``Problem.extra``). ``path`` instead reads a JSONL file of ``{"question", "completion"[, "answer",
"id"]}`` rows (the question goes through the run's prompt) or ``{"prompt", "completion"}`` rows
(TRL's prompt-completion format: the prompt is used verbatim, e.g. a task's own texts). Questions with an empty target are skipped (and counted at start-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from expo_rl.data.jsonl import read_json_lines
from expo_rl.data.records import Problem
from expo_rl.policy import encode_prompt
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


@dataclass
class FixedPairsOptions:
    rows_per_step: int = field(default=8, metadata={"help": "(q, o) rows per training step, over all processes"})
    target: str = field(default="solution", metadata={"help": "o: 'solution' (expert CoT) or 'extra:<field>'"})
    path: str | None = field(default=None, metadata={"help": "JSONL of {question, completion[, answer, id]} instead of the problems"})
    shuffle: bool = field(default=True, metadata={"help": "reshuffle the rows every epoch"})


Pair = tuple[Problem, str, "str | None"]  # (problem, completion, verbatim prompt or None)


def read_pairs(path: str) -> list[Pair]:
    """(problem, completion, verbatim prompt) triples from a JSONL file; errors name the file and line."""
    pairs = []
    for line_no, record in read_json_lines(path):
        try:
            prompt = record.get("prompt")
            question = record["question"] if prompt is None else str(prompt)
            problem = Problem(id=str(record.get("id", line_no)), question=question,
                              answer=str(record.get("answer", "")))
            pairs.append((problem, record["completion"], prompt))
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}:{line_no}: expected a JSON object with 'question' (or 'prompt') "
                             f"and 'completion' ({error})") from None
    return pairs


def target_text(problem: Problem, target: str) -> str:
    if target == "solution":
        return problem.solution
    if target.startswith("extra:"):
        return str(problem.extra.get(target[len("extra:"):], "") or "")
    raise ValueError(f"source option target={target!r}: allowed values are 'solution' or 'extra:<field>'")


class FixedPairs(CursorState):
    def __init__(self, pairs: list[Pair], options: FixedPairsOptions, env: SourceEnv):
        self.options, self.env = options, env
        self.pairs = [pair for pair in pairs if pair[1].strip()]
        self.skipped = len(pairs) - len(self.pairs)
        self.cursor = Cursor(len(self.pairs), seed=env.seed, shuffle=options.shuffle)

    def prepare(self, env: SourceEnv) -> None:
        pass

    def next_rows(self, ctx: StepContext) -> list[Row]:
        tokenizer = self.env.tokenizer
        rows = []
        for index in local_share(self.cursor.take(self.options.rows_per_step), self.env):
            problem, completion, prompt = self.pairs[index]
            rows.append(Row(
                prompt_ids=(question_prompt_ids(self.env, problem) if prompt is None
                            else encode_prompt(tokenizer, prompt)),
                completion_ids=encode(tokenizer, completion, eos=True),
                problem_id=problem.id, reference=problem.answer, completion=completion,
                fields=problem_fields(problem),
            ))
        return rows


@register_source("fixed", FixedPairsOptions)
def build_fixed(problems: list[Problem], options: FixedPairsOptions, env: SourceEnv) -> FixedPairs:
    """A fixed data set of (q, o) pairs; o = the expert solution by default (SFT)."""
    if options.path:
        pairs = read_pairs(options.path)
    else:
        pairs = [(p, target_text(p, options.target), None) for p in problems]
    return FixedPairs(pairs, options, env)
