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
# "final answer" needs "is" or ":" after it: a model echoing the prompt's "put the final answer
# within \boxed{}" must not yield "within \boxed{}" (seen on Gemma 3 270M, GSM8K).
_ANSWER_PHRASE = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is\b|(?=:)))[ \t]*:?[ \t]*", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


# Texts longer than this are read from their tail only: a final answer sits at the end, and a
# model can emit arbitrarily long garbage (every rule below is linear, so this only bounds time).
MAX_CHARS = 200_000
_BARE_ARG = re.compile(r"[^\s$]{1,200}")  # "\boxed 5": up to whitespace or $, 200 chars at most


def _box_spans(text: str) -> list[tuple[int, str]]:
    """``(start, content)`` of every complete box in ``text``, in order of appearance.

    One pass over ``text`` (linear time, however many unclosed boxes): a stack of open braces;
    when a ``}`` closes a brace that opened a box argument, that box is complete. A backslash
    escapes the next character (``\\{``, ``\\}`` never open or close a group).
    """
    found: list[tuple[int, str]] = []
    opener: dict[int, int] = {}  # index of a box argument's "{" -> index of its command
    for command in _BOX_COMMANDS:
        start = text.find(command)
        while start != -1:
            after = start + len(command)
            # "\boxedfoo" is another macro, not a box.
            if after < len(text) and text[after].isalpha():
                start = text.find(command, after)
                continue
            pos = after
            while pos < len(text) and text[pos] == " ":
                pos += 1
            if pos < len(text) and text[pos] == "{":
                opener[pos] = start
            elif pos < len(text):
                match = _BARE_ARG.match(text, pos)
                if match:
                    found.append((start, match.group(0)))
            start = text.find(command, after)
    if opener:
        stack: list[int] = []
        index, size = 0, len(text)
        while index < size:
            char = text[index]
            if char == "\\":
                index += 2
                continue
            if char == "{":
                stack.append(index)
            elif char == "}" and stack:
                brace = stack.pop()
                if brace in opener:
                    found.append((opener[brace], text[brace + 1 : index]))
            index += 1
    found.sort()
    return found


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
    """The answer after the last ``####`` marker (GSM8K), commas between digit groups removed.

    A marker counts at the start of a line (after spaces/tabs) and the answer is the rest of
    that line, stripped; a plain scan of lines, linear in the text's length.
    """
    for line in reversed(text.split("\n")):
        body = line.lstrip(" \t")
        if body.startswith("####"):
            answer = _THOUSANDS.sub("", body[4:].strip())
            return answer or None
    return None


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
    if len(text) > MAX_CHARS:
        text = text[-MAX_CHARS:]
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
