"""The shipped demo task: three modular equations ``a_i * x = c_i (mod p)``.

From the feasibility study (docs/notes/issue6-demo.md): three independent equations per
question, reward 1 only when all three answers are right, so a lucky guess is rare (one
equation alone leaves GRPO a 30-40% pass@8 by chance). Levels 1-5 use p = 5, 7, 11, 13, 17.

Texts (whitespace-separated tokens; numbers are single tokens):

* plain prompt ``q``:      ``mod 17 : 3 x = 5 ; 7 x = 2 ; 11 x = 9 ?``
* hinted prompt ``(q,a*)``: ``mod 17 : 3 x = 5 ; 7 x = 2 ; 11 x = 9 hint 13 12 4 ?``
* own chain of thought (guess, check ``a*g mod p``, retry), restating each equation first::

      3 x = 5 : 4 -> 12 no 13 -> 5 ok ; 7 x = 2 : 12 -> 2 ok ; 11 x = 9 : 4 -> 10 no 2 -> 5 no
      ... ok ; answer 13 12 4

* expert solution (another style: modular inverses, never in the base model's corpus)::

      inverse of 3 is 6 so x = 6 * 5 = 13 ; ... ; answer 13 12 4

* "check these candidates" (pretraining only, all levels): ``... check 4 6 1 ?`` followed by
  one checked guess per equation. It teaches the multiplication table mod p for every p, so the
  base model can *verify* hard questions without having seen them solved.
* hinted traces of the hard levels (pretraining only): the hinted prompt followed by an own-style
  trace, so the base model follows a hint on levels 4-5 too without ever seeing them solved from
  the plain prompt; see :meth:`ModularTask.pretraining_examples`.

The number of wrong guesses before the right one halves in probability (0: 1/2, 1: 1/4, ...):
the right guess comes early when the model knows the inverse, so on p = 13, 17, where it does
not, it rarely finds all three answers before the length cap ``max_new_tokens`` stops it.
"""

from __future__ import annotations

import random

from expo_rl.data.records import Problem
from expo_rl.tasks.base import DemoTask

PRIMES: dict[int, int] = {1: 5, 2: 7, 3: 11, 4: 13, 5: 17}
N_EQUATIONS = 3
# Each guess of a trace is right with probability RIGHT_GUESS_PROB (geometric number of wrong
# guesses, capped only by the p - 2 wrong values there are), so after any number of "no"s the
# next guess is right only half the time and its check has to be computed. With a hard cap on
# the tries, the try after the last allowed "no" would always be right, and the model learns to
# write "-> c ok" there without computing anything.
RIGHT_GUESS_PROB = 0.5
WORDS = ("mod", ":", "x", "=", ";", "?", "hint", "check", "->", "ok", "no", "answer",
         "inverse", "of", "is", "so", "*")


def _equations(problem: Problem) -> list[tuple[int, int, int]]:
    """``[(a, c, x), ...]`` of a problem made by :class:`ModularTask`."""
    extra = problem.extra
    return list(zip(extra["a"], extra["c"], extra["x"]))


def _int_token(token: str, upper: int) -> int | None:
    """The integer a token spells in canonical form (no sign, no leading zero), below ``upper``."""
    if not token.isdigit() or (len(token) > 1 and token[0] == "0"):
        return None
    value = int(token)
    return value if value < upper else None


class ModularTask(DemoTask):
    """Solve ``a_i * x = c_i (mod p)`` for three equations; p grows with the level."""

    name = "modular"
    solved_levels = (1, 2, 3)
    max_new_tokens = 80
    description = ("three modular equations a_i x = c_i (mod p) per question, p = 5, 7, 11, 13, 17 for "
                   "levels 1-5; held-out questions share single equations with training questions")
    hard_level_skill = "essentially a multiplication/inverse table mod p"

    def __init__(self, hard_hints: bool = True) -> None:
        # False: the first stage of the shipped base model's recipe (``build_base.build_shipped_recipe``)
        self.hard_hints = hard_hints

    def make_problem(self, level: int, rng: random.Random) -> Problem:
        if level not in PRIMES:
            raise ValueError(f"modular task: level must be one of {sorted(PRIMES)}, got {level!r}")
        p = PRIMES[level]
        a = [rng.randrange(1, p) for _ in range(N_EQUATIONS)]
        x = [rng.randrange(1, p) for _ in range(N_EQUATIONS)]
        c = [ai * xi % p for ai, xi in zip(a, x)]
        question = f"mod {p} : " + " ; ".join(f"{ai} x = {ci}" for ai, ci in zip(a, c))
        answer = " ".join(str(v) for v in x)
        problem = Problem(
            id=f"mod{p}-" + "-".join(f"{ai}x{ci}" for ai, ci in zip(a, c)),
            question=question, answer=answer, level=level, source="demo:modular",
            extra={"p": p, "a": a, "c": c, "x": x},
        )
        return Problem(**{**problem.__dict__, "solution": self.expert_solution(problem)})

    def prompt(self, problem: Problem) -> str:
        return f"{problem.question} ?"

    def hinted_prompt(self, problem: Problem) -> str:
        return f"{problem.question} hint {problem.answer} ?"

    def check_prompt(self, problem: Problem, candidates: list[int]) -> str:
        return f"{problem.question} check {' '.join(map(str, candidates))} ?"

    def solution_trace(self, problem: Problem, rng: random.Random) -> str:
        p = problem.extra["p"]
        parts = []
        for a, c, x in _equations(problem):
            n_wrong = 0
            while n_wrong < p - 2 and rng.random() >= RIGHT_GUESS_PROB:
                n_wrong += 1
            wrong = rng.sample([g for g in range(1, p) if g != x], n_wrong)
            tries = [f"{g} -> {a * g % p} no" for g in wrong] + [f"{x} -> {c} ok"]
            parts.append(f"{a} x = {c} : " + " ".join(tries))
        return " ; ".join(parts) + f" ; answer {problem.answer}"

    def check_trace(self, problem: Problem, completion: str) -> bool:
        """Every step right: equations restated in order, each check ``a*g mod p`` correct,
        ``ok`` exactly on the right guess (last try), and the answer the ok'd guesses."""
        p = problem.extra["p"]
        tokens = completion.split()
        if not self.verify(problem, completion):
            return False
        segments = " ".join(tokens[:-4]).split(" ; ")
        if len(segments) != N_EQUATIONS or tokens[-5] != ";":
            return False
        segments[-1] = segments[-1].removesuffix(" ;")
        for segment, (a, c, x) in zip(segments, _equations(problem)):
            words = segment.split()
            if words[:5] != [str(a), "x", "=", str(c), ":"]:
                return False
            tries = words[5:]
            if not tries or len(tries) % 4:
                return False
            for i in range(0, len(tries), 4):
                guess, arrow, value, verdict = tries[i:i + 4]
                g, v = _int_token(guess, p), _int_token(value, p)
                last = i + 4 == len(tries)
                if g is None or v is None or arrow != "->" or v != a * g % p:
                    return False
                if verdict != ("ok" if last else "no") or (v == c) != last:
                    return False
            if _int_token(tries[-4], p) != x:
                return False
        return True

    def expert_solution(self, problem: Problem) -> str:
        p = problem.extra["p"]
        steps = []
        for a, c, x in _equations(problem):
            inverse = pow(a, -1, p)
            steps.append(f"inverse of {a} is {inverse} so x = {inverse} * {c} = {x}")
        return " ; ".join(steps) + f" ; answer {problem.answer}"

    def verify(self, problem: Problem, completion: str) -> bool:
        """True iff the completion ends with ``answer x1 x2 x3`` (the only ``answer`` in it),
        each a canonical integer in ``[0, p)`` equal to the solution. Nothing may follow."""
        p = problem.extra["p"]
        tokens = completion.split()
        if len(tokens) < 4 or tokens[-4] != "answer" or tokens.count("answer") != 1:
            return False
        values = [_int_token(t, p) for t in tokens[-3:]]
        return values == problem.extra["x"]

    def split_answer(self, completion: str) -> tuple[str, str] | None:
        head, sep, tail = completion.rpartition(" answer ")
        return (head, "answer " + tail) if sep else None

    def answer_text(self, problem: Problem) -> str:
        return f"answer {problem.answer}"

    def pretraining_examples(self, level: int, rng: random.Random) -> list[tuple[str, str]]:
        """Solve + hinted traces on the solved levels (base class), one "check these candidates"
        trace on every level, and on the hard levels a hinted trace in the own guess-check-retry
        style (wrong guesses with correct checks, then the hinted value).

        Why the last one (measured, docs/notes/issue6-demo.md): with check traces alone the base
        model followed a level-5 hint 10% of the time (it had seen p = 17 only in the check
        format); with hinted traces that check the hinted value directly it followed hints, but
        SFT on such direct explanations taught nothing usable on held-out level 5. Hinted traces
        with correct mod-p arithmetic in the solve format give explanations ExP-GRPO learns
        from, while the plain prompt of a hard level is never shown (base pass@8 on level 5 ~0.08:
        a search rarely finishes within ``max_new_tokens``).
        """
        examples = super().pretraining_examples(level, rng)
        if level not in self.solved_levels and self.hard_hints:
            hard = self.make_problem(level, rng)
            examples.append((self.hinted_prompt(hard), self.solution_trace(hard, rng)))
        problem = self.make_problem(level, rng)
        p = problem.extra["p"]
        candidates = [rng.randrange(1, p) for _ in range(N_EQUATIONS)]
        checks = []
        for (a, c, _), g in zip(_equations(problem), candidates):
            value = a * g % p
            checks.append(f"{a} x = {c} : {g} -> {value} {'ok' if value == c else 'no'}")
        examples.append((self.check_prompt(problem, candidates), " ; ".join(checks) + " ;"))
        return examples

    def vocabulary(self) -> list[str]:
        return [str(n) for n in range(max(PRIMES.values()) + 1)] + list(WORDS)


TASK = ModularTask()
