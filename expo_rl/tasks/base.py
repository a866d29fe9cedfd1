"""The task plugin interface of ``expo-rl demo``: one module = one synthetic verifiable task.

A task supplies everything the demo needs that depends on the problem domain, as plain text:

* ``make_problem(level, rng)``: a question of difficulty ``level`` (1 = easy ... 5 = hard) as a
  :class:`~expo_rl.data.records.Problem` (``answer`` = the ground truth ``a*``, ``solution`` =
  the expert solution ``c_E``, ``extra`` = whatever the task needs to verify);
* ``prompt(problem)``: the plain prompt ``q``;
* ``hinted_prompt(problem)``: the self-explanation prompt ``(q, a*)`` (ExPO paper eq. 7): the
  plain prompt plus the answer as a hint, so ``c~ ~ pi(. | q, a*)``;
* ``solution_trace(problem, rng)``: a chain of thought in the model's OWN style, ending with
  the answer (the base model is pretrained on these for the easy levels);
* ``expert_solution(problem)``: a correct solution in a DIFFERENT style (the "expert CoT"
  baseline of the paper, deliberately out of the model's distribution);
* ``verify(problem, completion)``: STRICT outcome check (the reward): the completion must end
  with exactly one well-formed answer equal to ``a*``; anything malformed is wrong;
* ``check_trace(problem, completion)``: stricter whole-trace check (every intermediate step
  right), used to filter refreshed self-explanations (default: ``verify``);
* ``pretraining_examples(level, rng)``: the (prompt, completion) pairs the tiny base model is
  trained on for ``level``. The default gives solve + hinted traces for ``solved_levels`` and
  nothing for harder levels, so the base model is strong on easy levels and weak on hard ones;
  a task adds auxiliary traces (e.g. "check these candidates") by overriding it;
* ``vocabulary()``: every whitespace-separated token the task's texts can contain (the demo
  builds a word-level tokenizer from it, numbers become single tokens).

All texts are whitespace-separated tokens (the tokenizer splits on spaces only), so
``decode(encode(text)) == text`` for canonical texts and verifiers see exactly what the model
wrote. See docs/ADDING_A_TASK.md.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod

from expo_rl.data.records import Problem

LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)


class DemoTask(ABC):
    """Base class of a demo task; subclass it in one file and expose ``TASK = YourTask()``."""

    #: Short identifier (used in file names and the report).
    name: str = "task"
    #: Difficulty levels the task generates.
    levels: tuple[int, ...] = LEVELS
    #: Levels whose solutions the base model sees during pretraining (the rest stay "hard").
    solved_levels: tuple[int, ...] = (1, 2, 3)
    #: Generation budget for one completion, in tokens (a cap: traces longer than this fail).
    max_new_tokens: int = 64
    #: What the task is, in a sentence or two; reports quote it (empty: they say nothing about it).
    description: str = ""
    #: What learning the hardest level amounts to (e.g. "a table of inverses mod p"); reports
    #: quote it when they discuss the hardest level (empty: they say nothing about it).
    hard_level_skill: str = ""

    @abstractmethod
    def make_problem(self, level: int, rng: random.Random) -> Problem:
        """A fresh question of difficulty ``level`` drawn with ``rng``."""

    @abstractmethod
    def prompt(self, problem: Problem) -> str:
        """The plain prompt ``q`` (whitespace-separated tokens)."""

    @abstractmethod
    def hinted_prompt(self, problem: Problem) -> str:
        """The self-explanation prompt: ``q`` plus the ground-truth answer as a hint."""

    @abstractmethod
    def solution_trace(self, problem: Problem, rng: random.Random) -> str:
        """A correct chain of thought in the model's own style, ending with the answer."""

    @abstractmethod
    def expert_solution(self, problem: Problem) -> str:
        """A correct solution in a different style (the paper's expert CoT ``c_E``)."""

    @abstractmethod
    def verify(self, problem: Problem, completion: str) -> bool:
        """Strict outcome check: True iff ``completion`` ends with one well-formed answer ``a*``."""

    @abstractmethod
    def vocabulary(self) -> list[str]:
        """Every token (whitespace-separated word) any of the task's texts can contain."""

    def check_trace(self, problem: Problem, completion: str) -> bool:
        """Whole-trace check (every step right); by default the outcome check."""
        return self.verify(problem, completion)

    def pretraining_examples(self, level: int, rng: random.Random) -> list[tuple[str, str]]:
        """(prompt, completion) pairs for one question of ``level`` in the base model's corpus.

        Default: for a solved level, the plain prompt and the hinted prompt, each followed by a
        solution trace (the hinted one teaches the model to use a hint, which is what makes
        self-explanations possible later); nothing for the other levels.
        """
        if level not in self.solved_levels:
            return []
        problem = self.make_problem(level, rng)
        return [
            (self.prompt(problem), self.solution_trace(problem, rng)),
            (self.hinted_prompt(problem), self.solution_trace(problem, rng)),
        ]

    def split_answer(self, completion: str) -> tuple[str, str] | None:
        """(chain of thought, final-answer text) of a completion, for the answer-reachability
        diagnostic ``pi(a* | q, c)``; None (the default) skips that diagnostic."""
        return None

    def answer_text(self, problem: Problem) -> str | None:
        """The final-answer text stating ``a*`` in the task's format (pairs with
        :meth:`split_answer`); None skips the reachability diagnostic."""
        return None

    def reward(self, problem: Problem, completion: str) -> float:
        """The binary outcome reward ``1{verify}`` (SPEC section 1)."""
        return 1.0 if self.verify(problem, completion) else 0.0

    def problem_key(self, problem: Problem) -> str:
        """Identity used to keep held-out questions out of the training pool."""
        return problem.question
