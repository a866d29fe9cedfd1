"""Final-answer extraction from model outputs and reference texts.

An output ``o = (c, a)`` is a chain of thought followed by a final answer in the task's answer
format (SPEC section 1): MATH writes it as ``\\boxed{a}``, GSM8K references as ``#### a``.
Extraction order (the first rule that finds something wins):

1. the last *complete* ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces balanced; a box cut
   off by truncation is ignored), or ``\\boxed 5`` without braces;
2. the last ``#### a`` line (GSM8K), thousands separators removed;
3. lenient mode only: the last "the (final) answer is ..." / "Final answer: ..." phrase.

``strict=True`` stops after rule 2: only explicit answer markers count, which is what a
format-sensitive reward wants; the lenient default also accepts the natural-language phrase.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_HASH_ANSWER = re.compile(r"^[ \t]*####[ \t]*(.+?)[ \t]*$", re.MULTILINE)
# "final answer" needs "is" or ":" after it: a model echoing the prompt's "put the final answer
# within \boxed{}" must not yield "within \boxed{}" (seen on Gemma 3 270M, GSM8K).
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is\b|(?=:)))[ \t]*:?[ \t]*", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


def _box_spans(text: str) -> list[tuple[int, str]]:
    """``(start, content)`` of every complete box in ``text``, in order of appearance."""
    found: list[tuple[int, str]] = []
    for command in _BOX_COMMANDS:
        start = text.find(command)
        while start != -1:
            after = start + len(command)
            # "\boxedfoo" is another macro, not a box.
            if after < len(text) and (text[after].isalpha()):
                start = text.find(command, after)
                continue
            content = _box_content(text, after)
            if content is not None:
                found.append((start, content))
            start = text.find(command, after)
    found.sort()
    return found


def _box_content(text: str, pos: int) -> str | None:
    """The argument of a box command whose name ends at ``pos``; None when unbalanced."""
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos >= len(text):
        return None
    if text[pos] != "{":
        # "\boxed 5": the argument runs to the next whitespace or math delimiter.
        match = re.match(r"[^\s$]+", text[pos:])
        return match.group(0) if match else None
    depth = 0
    index = pos
    while index < len(text):
        char = text[index]
        if char == "\\":
            # An escaped character (\{, \}, \\) never opens or closes a group.
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[pos + 1 : index]
        index += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{}``/``\\fbox{}`` in ``text`` (stripped), or None."""
    spans = _box_spans(text)
    for _, content in reversed(spans):
        if content.strip():
            return content.strip()
    return None


def has_boxed_answer(text: str) -> bool:
    """True when ``text`` contains a complete, non-empty box."""
    return last_boxed(text) is not None


def hash_answer(text: str) -> str | None:
    """The answer after the last ``####`` marker (GSM8K), commas between digit groups removed."""
    matches = _HASH_ANSWER.findall(text)
    if not matches:
        return None
    answer = _THOUSANDS.sub("", matches[-1].strip())
    return answer or None


def phrase_answer(text: str) -> str | None:
    """The answer in the last "the answer is X" phrase: to the sentence or line end, ``$`` trimmed.

    A sentence ends at a period followed by whitespace, so decimals like ``3.5`` survive.
    """
    for match in reversed(list(_ANSWER_PHRASE.finditer(text))):
        answer = text[match.end():].split("\n", 1)[0]
        answer = _SENTENCE_END.split(answer, 1)[0]
        answer = answer.strip().strip("$").strip().rstrip(".").strip()
        if answer:
            return answer
    return None


def extract_answer(text: str, *, strict: bool = False) -> str | None:
    """The final answer in ``text`` (rules in the module docstring), or None when there is none."""
    if not text:
        return None
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    hashed = hash_answer(text)
    if hashed is not None:
        return hashed
    if strict:
        return None
    return phrase_answer(text)


def reference_answer(reference: str) -> str:
    """A reference as a bare answer: raw GSM8K ``... #### 18`` and boxed solutions are reduced.

    Loaders already store bare answers; this only protects callers that pass raw dataset text.
    """
    if "####" in reference or "\\boxed" in reference or "\\fbox" in reference:
        extracted = extract_answer(reference, strict=True)
        if extracted is not None:
            return extracted
    return reference.strip()
