"""ExPO text handling: hint sources (exact documented strings), answer format, leak stripping."""

from __future__ import annotations

import pytest

from expo_rl.data.records import Problem
from expo_rl.expo.answer_format import (
    ANSWER_FORMATS,
    expert_cot,
    expert_positive,
    expert_solution,
    split_final_answer,
    with_gold_answer,
)
from expo_rl.expo.hints import HINT_SOURCES, HintOptions, get_hint_source, word_prefix
from expo_rl.expo.leaks import count_hint_mentions, strip_hint_mentions

BOXED = ANSWER_FORMATS["boxed"]
MATH = Problem(
    id="math/1",
    question="How many pairings are possible?",
    answer="16",
    solution="There are four bowls and four glasses. So there are $4 \\times 4 = \\boxed{16}$ pairings.",
    level=2,
    source="math",
)
GSM = Problem(
    id="gsm8k_train/0",
    question="How many clips did Natalia sell?",
    answer="72",
    solution="Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nShe sold 48+24 = <<48+24=72>>72 clips.\n#### 72",
    source="gsm8k",
)


def test_answer_hint_is_the_documented_sentence():
    assert get_hint_source("answer")(MATH, HintOptions()) == "The correct final answer is 16."


def test_expert_prefix_hint_gives_exactly_the_first_words():
    hint = get_hint_source("answer_plus_expert_prefix")
    # 16 words in the MATH solution; fraction 0.25 -> floor(4.0) = 4 words.
    assert hint(MATH, HintOptions(fraction=0.25)) == (
        "The correct final answer is 16.\n\nThe beginning of a correct solution:\nThere are four bowls"
    )
    # GSM8K: the expert text has no calculator annotations and no '#### 72' line.
    full = hint(GSM, HintOptions(fraction=1.0))
    assert full.endswith("She sold 48+24 = 72 clips.")
    assert "<<" not in full and "####" not in full
    # fraction 0 (or no solution) falls back to the answer hint.
    assert hint(MATH, HintOptions(fraction=0.0)) == "The correct final answer is 16."


def test_hint_registry_errors_name_the_allowed_values():
    with pytest.raises(ValueError, match="answer_plus_expert_prefix"):
        get_hint_source("nope")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        HintOptions(fraction=1.5)
    assert {"answer", "answer_plus_expert_prefix"} <= set(HINT_SOURCES)


def test_word_prefix_keeps_original_spacing():
    assert word_prefix("a  b\nc d", 0.75) == "a  b\nc"
    assert word_prefix("a b", 0.49) == ""


def test_split_final_answer_cuts_the_answer_sentence_and_heading():
    cot, final = split_final_answer("Add 2 and 3 to get 5.\n**Final Answer:**\nThe final answer is $\\boxed{5}$")
    assert cot == "Add 2 and 3 to get 5."
    assert final == "The final answer is $\\boxed{5}$"
    assert split_final_answer("no marker here. 3.5 stays") == ("no marker here. 3.5 stays", "")
    assert split_final_answer("x = 3\n#### 3")[0] == "x = 3"


def test_with_gold_answer_replaces_the_boxed_answer_minimally():
    text = "So $x = \\boxed{\\frac{1}{2}}$ in total. I hope this helps!"
    assert with_gold_answer(text, "0.5", BOXED) == "So $x = \\boxed{0.5}$ in total."
    assert with_gold_answer("We get 7", "7", BOXED) == "We get 7\n\nThe final answer is $\\boxed{7}$."
    assert with_gold_answer("x\n#### 6", "5", ANSWER_FORMATS["gsm8k_hash"]) == "x\n#### 5"


def test_expert_texts():
    assert expert_solution(GSM) == "Natalia sold 48/2 = 24 clips in May.\nShe sold 48+24 = 72 clips."
    assert expert_positive(GSM, BOXED).endswith("72 clips.\n\nThe final answer is $\\boxed{72}$.")
    assert expert_positive(MATH, BOXED) == MATH.solution
    assert expert_cot(MATH) == "There are four bowls and four glasses."


def test_leak_sentences_are_counted_and_stripped():
    text = "We add 2 and 3. As the hint says, the answer is 5.\nSince we are told the answer is 5, check 5. So 5."
    stripped, removed = strip_hint_mentions(text)
    assert removed == 2
    assert stripped == "We add 2 and 3.\nSo 5."
    assert count_hint_mentions("Compute 3.5 + 1 = 4.5. The answer is 4.5.") == 0
