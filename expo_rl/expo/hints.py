"""Hint sources: what the model is told, beside the question, when it writes a self-explanation.

A self-explanation is ``c~ ~ pi(. | q, h)`` with a hint ``h`` (SPEC section 3.2). The ExPO paper
uses the ground-truth answer, ``h = a*``; its closing remarks propose other hints, e.g. a
partial expert chain of thought. Every hint source has ONE signature,

    hint(problem: Problem, options: HintOptions) -> str

and returns the text placed after the question in the explanation prompt (the template in
``expo_rl.expo.explanations`` decides where). Registered sources, with their exact text:

* ``answer`` (the paper)::

      The correct final answer is {a*}.

* ``answer_plus_expert_prefix`` (beyond the paper): the answer plus the first ``fraction`` of
  the expert solution's words (``floor(fraction * n_words)`` whitespace-separated words, the
  original spacing kept; the expert solution as in ``answer_format.expert_solution``)::

      The correct final answer is {a*}.

      The beginning of a correct solution:
      {prefix}

  With an empty prefix (``fraction`` 0, or no expert solution) it is the ``answer`` hint.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from expo_rl.data.records import Problem
from expo_rl.expo.answer_format import expert_solution
from expo_rl.registry import Registry


@dataclass(frozen=True)
class HintOptions:
    """Parameters of the hint sources (each source reads the ones it needs).

    ``fraction``: share of the expert solution's words given by ``answer_plus_expert_prefix``,
    in ``[0, 1]``.
    """

    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"hint fraction must be in [0, 1], got {self.fraction}")


HintSource = Callable[[Problem, HintOptions], str]
HINT_SOURCES: Registry[HintSource] = Registry("hint source")


def register_hint(name: str) -> Callable[[HintSource], HintSource]:
    """Decorator: register a hint source under ``name``."""
    return HINT_SOURCES.register(name)


def get_hint_source(name: str) -> HintSource:
    """The hint source registered under ``name`` (UnknownNameError lists the allowed names)."""
    return HINT_SOURCES.get(name)


def answer_sentence(answer: str) -> str:
    """The sentence every answer-based hint starts with."""
    return f"The correct final answer is {answer}."


def word_prefix(text: str, fraction: float) -> str:
    """The first ``floor(fraction * n_words)`` whitespace-separated words of ``text``."""
    words = list(re.finditer(r"\S+", text))
    keep = math.floor(fraction * len(words) + 1e-9)
    return text[: words[keep - 1].end()] if keep > 0 else ""


@register_hint("answer")
def answer_hint(problem: Problem, options: HintOptions) -> str:
    """The ground-truth answer ``a*`` (the ExPO paper's hint)."""
    return answer_sentence(problem.answer)


@register_hint("answer_plus_expert_prefix")
def answer_plus_expert_prefix_hint(problem: Problem, options: HintOptions) -> str:
    """``a*`` plus the first ``options.fraction`` of the expert solution (beyond the paper)."""
    prefix = word_prefix(expert_solution(problem), options.fraction)
    if not prefix:
        return answer_sentence(problem.answer)
    return f"{answer_sentence(problem.answer)}\n\nThe beginning of a correct solution:\n{prefix}"
