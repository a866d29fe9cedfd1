"""Answer extraction is linear in the text's length and capped: a model that emits 100 KB of
unclosed boxes or a huge "####" line costs milliseconds, not minutes (75 s before)."""

import random
import re
import time

import pytest

from expo_rl.verify.extract import MAX_CHARS, _box_spans, extract_answer, hash_answer


@pytest.mark.parametrize("text", [
    "\\boxed{" * 14_000,                       # 100 KB of unclosed boxes (75 s before)
    "\\boxed{" * 14_000 + "\\boxed{7}",
    "\\fbox{" * 20_000,
    "\n#### 5" + " " * 150_000 + "x",          # lazy regex backtracking over spaces (minutes before)
    "{" * 100_000 + "\\boxed{1",
    "\\boxed " * 30_000,
    "the answer is " * 10_000,
])
def test_adversarial_texts_extract_in_linear_time(text):
    start = time.perf_counter()
    extract_answer(text)
    assert time.perf_counter() - start < 1.0


def test_text_over_the_cap_is_read_from_its_tail():
    text = "x" * (MAX_CHARS * 2) + " so \\boxed{42}"
    assert extract_answer(text) == "42"


def _reference_box_spans(text):
    """The pre-issue-16 (quadratic) implementation, as the oracle for the linear one."""
    found = []
    for command in ("\\boxed", "\\fbox"):
        start = text.find(command)
        while start != -1:
            after = start + len(command)
            if after < len(text) and text[after].isalpha():
                start = text.find(command, after)
                continue
            pos = after
            while pos < len(text) and text[pos] == " ":
                pos += 1
            content = None
            if pos < len(text):
                if text[pos] != "{":
                    match = re.match(r"[^\s$]+", text[pos:])
                    content = match.group(0) if match else None
                else:
                    depth, index = 0, pos
                    while index < len(text):
                        char = text[index]
                        if char == "\\":
                            index += 2
                            continue
                        if char == "{":
                            depth += 1
                        elif char == "}":
                            depth -= 1
                            if depth == 0:
                                content = text[pos + 1:index]
                                break
                        index += 1
            if content is not None:
                found.append((start, content))
            start = text.find(command, after)
    return sorted(found)


def test_linear_box_scan_matches_the_reference_on_random_texts():
    rng = random.Random(0)
    pieces = ["\\boxed", "\\fbox", "{", "}", "\\{", "\\}", "\\\\", " ", "x", "1", "$", "\\boxedx", "\n"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        assert _box_spans(text) == _reference_box_spans(text), text


@pytest.mark.parametrize(("text", "answer"), [
    ("#### 1,234", "1234"), ("a\n  #### 5  \nb", "5"), ("#### 1\n####   ", None), ("no marker", None),
    ("x #### 3", None),
])
def test_hash_answer_keeps_its_rules(text, answer):
    assert hash_answer(text) == answer
