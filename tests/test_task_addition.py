"""The ``addition`` task (issue 13's graded task for Gemma 3 270M): questions, texts, strict verifier."""

from __future__ import annotations

import random
import re

import pytest

from expo_rl.tasks import load_task
from expo_rl.tasks.addition import DIGITS, SHOTS

TASK = load_task("addition")


@pytest.mark.parametrize("level", sorted(DIGITS))
def test_levels_have_their_digit_counts_and_the_sum_as_answer(level):
    rng = random.Random(level)
    for _ in range(50):
        p = TASK.make_problem(level, rng)
        a, b = p.extra["a"], p.extra["b"]
        assert (len(str(a)), len(str(b))) == DIGITS[level]
        assert p.answer == str(a + b) and p.level == level
        assert p.question == f"What is {a} + {b}?"


def test_prompts_are_few_shot_and_the_hinted_prompt_gives_the_answer():
    p = TASK.make_problem(5, random.Random(0))
    prompt, hinted = TASK.prompt(p), TASK.hinted_prompt(p)
    assert prompt.endswith(f"Q: What is {p.extra['a']} + {p.extra['b']}?\nA:")
    assert prompt.count("Q: ") == len(SHOTS) + 1 and prompt.count("The answer is") == len(SHOTS)
    assert hinted.endswith(f"(Hint: the answer is {p.answer}.)\nA:")
    assert p.answer not in prompt.split("\n\n")[-1]


def test_verifier_is_strict():
    p = TASK.make_problem(5, random.Random(1))
    s = p.answer
    good = TASK.solution_trace(p, random.Random(0))
    assert TASK.verify(p, good) and TASK.verify(p, good + "\n\n")
    assert TASK.verify(p, f" The answer is {s}")  # no chain of thought, no final period: still the answer
    assert not TASK.verify(p, f" {s[:-1]}. The answer is {int(s) + 1}.")
    assert not TASK.verify(p, f" The answer is {int(s):,}.") or int(s) < 1000  # no separators
    assert not TASK.verify(p, f" The answer is {s}. The answer is {s}.")  # one answer only
    assert not TASK.verify(p, f" The answer is {s}.\n\nQ: What is 1 + 1?")  # nothing after it
    assert not TASK.verify(p, f" The answer is {s}0.")


def test_expert_solution_is_right_column_by_column_and_verifies():
    rng = random.Random(3)
    for level in sorted(DIGITS):
        for _ in range(30):
            p = TASK.make_problem(level, rng)
            text = TASK.expert_solution(p)
            assert TASK.verify(p, text) and text == p.solution
            written = re.findall(r"write (\d)", text)
            assert "".join(reversed(written)) == p.answer  # the written digits spell the sum
            assert "carry" not in text or int(p.answer) >= 10


def test_answer_split_matches_the_answer_text():
    p = TASK.make_problem(4, random.Random(2))
    head, tail = TASK.split_answer(TASK.solution_trace(p, random.Random(0)))
    assert tail == TASK.answer_text(p) and head.startswith(" ") and not head.endswith(" ")
    assert head + tail == TASK.solution_trace(p, random.Random(0))  # the parts are the completion
