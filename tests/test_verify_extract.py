"""Answer extraction: last complete box (nested braces), ``\\fbox``, ``#### n``, "the answer is"."""

import pytest

from expo_rl.verify import extract_answer, has_boxed_answer, reference_answer


@pytest.mark.parametrize("text,expected", [
    ("so $x = \\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("nested \\boxed{\\sqrt{\\frac{a^{2}}{b_{1}}}} ok", "\\sqrt{\\frac{a^{2}}{b_{1}}}"),
    ("first \\boxed{1}, then \\boxed{2}", "2"),  # the last box wins
    ("\\boxed{1} and \\fbox{3}", "3"),
    ("escaped braces \\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
    ("line break inside \\boxed{a \\\\ b}", "a \\\\ b"),
    ("spaced \\boxed {7}", "7"),
    ("no braces $\\boxed 5$", "5"),
    ("truncated at the end: \\boxed{4} ... \\boxed{\\frac{1}{", "4"),  # unbalanced last box ignored
    ("\\boxed{} then nothing", None),  # an empty box is no answer
    ("\\boxedx{3} is another macro", None),
    ("Natalia sold 48/2 = 24 clips.\n#### 72", "72"),
    ("so the total is\n####  1,234,567 ", "1234567"),
    ("The answer is $\\frac{3}{4}$.", "\\frac{3}{4}"),
    ("so the final answer is: 12 apples.\nDone", "12 apples"),
    ("Final Answer: 9", "9"),
    ("the answer is 3. Wait, the answer is 4.", "4"),
    ("The answer is 3.5. That is all.", "3.5"),
    ("no answer here, only 42", None),
    # the prompt's instruction echoed back is not an answer phrase (Gemma 3 270M does this)
    ("put the final answer within \\boxed{}.\n\nAnswer:  60 meters", None),
    ("The answer is 18.\nLet's think step by step and put the final answer within \\boxed{}.", "18"),
    ("Final answer is 7", "7"),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_box_beats_hashes_beats_phrase():
    text = "The answer is 1.\n#### 2\nso \\boxed{3}"
    assert extract_answer(text) == "3"
    assert extract_answer("The answer is 1.\n#### 2") == "2"


@pytest.mark.parametrize("text,lenient,strict", [
    ("The answer is 5.", "5", None),
    ("\\boxed{5}", "5", "5"),
    ("#### 5", "5", "5"),
    ("final answer: 5", "5", None),
])
def test_strict_accepts_only_explicit_markers(text, lenient, strict):
    assert extract_answer(text) == lenient
    assert extract_answer(text, strict=True) == strict


def test_has_boxed_answer_and_reference_answer():
    assert has_boxed_answer("x \\boxed{2}") and not has_boxed_answer("x \\boxed{")
    assert not has_boxed_answer("\\boxed{ }")
    assert reference_answer("reasoning <<1+1=2>>2\n#### 2") == "2"
    assert reference_answer(" \\frac{1}{2} ") == "\\frac{1}{2}"
