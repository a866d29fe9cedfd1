"""The task's answer format, and splitting a written solution into chain of thought and answer.

ExPO (SPEC section 3.2) trains on ``(q, c~, a*)``: the chain of thought ``c~`` *followed by the
ground-truth answer ``a*`` in the task's answer format*, and measures answer reachability
``pi(a* | q, c)`` (Lemma 2). Both need two text operations, kept here as pure functions:

* ``split_final_answer(text)``: ``text = c + (final-answer sentence)``. The final-answer sentence
  is the sentence (or line) holding the last ``\\boxed{`` / ``\\fbox{`` / ``####`` marker, plus
  anything after it and a dangling "Final Answer:" heading just before it. Text without a
  marker is all chain of thought.
* ``AnswerFormat``: how ``a*`` is written after a chain of thought. The answer statement is
  ``lead + a* + close + tail``; ``pi(a* | q, c)`` is the probability of the tokens of
  ``a* + close`` after ``prompt + c + lead`` (``close`` terminates the answer, so ``1`` is not
  counted as a prefix of ``12``).

Both tasks default to the boxed format (``\\n\\nThe final answer is $\\boxed{a*}$.``): the plain
prompt's instruction asks for ``\\boxed{}`` on MATH and GSM8K alike, and the verifier reads the
last ``\\boxed{}`` first. GSM8K's native ``#### a*`` format is available as ``gsm8k_hash``.

The expert chain of thought ``c_E`` is the data set's human solution; for GSM8K the reasoning
before ``####`` with the ``<<48/2=24>>`` calculator annotations removed (they are tool calls of
the GSM8K annotators, not text a model reads or writes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from expo_rl.data.records import Problem
from expo_rl.registry import Registry


@dataclass(frozen=True)
class AnswerFormat:
    """How an answer is written after a chain of thought: ``lead + answer + close + tail``."""

    name: str
    lead: str
    close: str
    tail: str

    def statement(self, answer: str) -> str:
        """The full answer statement appended to a chain of thought."""
        return f"{self.lead}{answer}{self.close}{self.tail}"

    def with_answer(self, cot: str, answer: str) -> str:
        """``cot`` followed by ``answer`` in this format (the positive sample's text)."""
        return cot.rstrip() + self.statement(answer)


ANSWER_FORMATS: Registry[AnswerFormat] = Registry("answer format")
ANSWER_FORMATS.add("boxed", AnswerFormat("boxed", "\n\nThe final answer is $\\boxed{", "}", "$."))
ANSWER_FORMATS.add("gsm8k_hash", AnswerFormat("gsm8k_hash", "\n#### ", "", ""))

# Which answer format each task uses by default (see the module docstring for why both are boxed).
TASK_FORMATS: dict[str, str] = {"math": "boxed", "gsm8k": "boxed"}
TASKS = tuple(TASK_FORMATS)


def get_answer_format(name: str) -> AnswerFormat:
    """Look up an answer format by name; UnknownNameError lists the allowed names."""
    return ANSWER_FORMATS.get(name)


def task_of(problem: Problem) -> str:
    """``"gsm8k"`` for GSM8K problems (by ``source`` or id), else ``"math"``."""
    tag = f"{problem.source} {problem.id}".lower()
    return "gsm8k" if "gsm8k" in tag else "math"


def resolve_task(task: str, problem: Problem) -> str:
    """``task`` itself, or the problem's task when ``task == "auto"``."""
    if task == "auto":
        return task_of(problem)
    if task not in TASK_FORMATS:
        raise ValueError(f"unknown task {task!r}; allowed: auto, {', '.join(TASKS)}")
    return task


_MARKER = re.compile(r"\\boxed\s*\{|\\fbox\s*\{|####")
# A sentence ends at a newline, or at . ! ? followed by whitespace (so 3.5 and $x.y$ don't split).
_SENTENCE_END = re.compile(r"\n|[.!?](?=\s)")
# "**Final Answer:**", "Answer:", "### Final answer" left dangling once the answer sentence goes.
_DANGLING_HEADING = re.compile(
    r"(?:^|\n)[ \t#*_>-]*(?:the\s+)?(?:final\s+)?answer\s*(?:is)?\s*[:.]?[ \t*_]*$", re.IGNORECASE
)
_CALCULATOR = re.compile(r"<<[^<>]*>>")


def split_final_answer(text: str) -> tuple[str, str]:
    """Split ``text`` into ``(chain_of_thought, final_answer_sentence)``.

    The final-answer sentence starts at the last sentence boundary before the last answer
    marker (``\\boxed{``, ``\\fbox{``, ``####``); when there is no marker the whole text is the
    chain of thought and the second part is ``""``. The chain of thought is right-stripped.
    """
    markers = list(_MARKER.finditer(text))
    if not markers:
        return text.rstrip(), ""
    start = markers[-1].start()
    cut = 0
    for match in _SENTENCE_END.finditer(text, 0, start):
        cut = match.end()
    cot = text[:cut].rstrip()
    heading = _DANGLING_HEADING.search(cot)
    if heading:
        cot = cot[: heading.start()].rstrip()
    return cot, text[cut:].strip()


def strip_calculator_annotations(text: str) -> str:
    """Remove GSM8K's ``<<48/2=24>>`` calculator annotations."""
    return _CALCULATOR.sub("", text)


def expert_solution(problem: Problem) -> str:
    """The expert solution as a model would read it (GSM8K: no ``#### n``, no annotations)."""
    text = problem.solution or ""
    if task_of(problem) == "gsm8k":
        text = strip_calculator_annotations(text)
        text = re.split(r"\n?####", text, maxsplit=1)[0]
    return text.strip()


def expert_cot(problem: Problem) -> str:
    """The expert chain of thought ``c_E``: the expert solution without its answer sentence."""
    return split_final_answer(expert_solution(problem))[0]


def _closing_brace(text: str, open_index: int) -> int | None:
    """Index of the ``}`` matching the ``{`` at ``open_index`` (``None`` if unbalanced)."""
    depth = 0
    for index in range(open_index, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    return None


_SENTENCE_REST = re.compile(r"[^\n]*?(?:[.!?](?=\s|$)|$)")


def with_gold_answer(text: str, answer: str, fmt: AnswerFormat) -> str:
    """``text`` rewritten so that its final answer is exactly ``answer`` in format ``fmt``.

    Minimal edit: when the last answer marker is already in ``fmt``'s style, its content is
    replaced by ``answer`` and the text ends with the rest of that sentence (trailing chatter
    after it is dropped); otherwise the final-answer sentence is cut and ``fmt.statement(answer)``
    appended. Text without a marker gets the statement appended.
    """
    markers = list(_MARKER.finditer(text))
    if markers:
        marker = markers[-1]
        is_boxed = marker.group().startswith("\\")
        if is_boxed and fmt.close == "}":
            close = _closing_brace(text, marker.end() - 1)
            if close is not None:
                rest = _SENTENCE_REST.match(text, close + 1)
                tail = rest.group() if rest else ""
                return f"{text[: marker.end()]}{answer}}}{tail}".rstrip()
        elif not is_boxed and fmt.name == "gsm8k_hash":
            return f"{text[: marker.start()].rstrip()}{fmt.statement(answer)}"
    return fmt.with_answer(split_final_answer(text)[0], answer)


def expert_positive(problem: Problem, fmt: AnswerFormat) -> str:
    """The expert solution ``c_E`` followed by ``a*`` in format ``fmt`` (GRPO SFT-GT-CoT, DPO c_E)."""
    return with_gold_answer(expert_solution(problem), problem.answer, fmt)
