"""Find and strip sentences in which a self-explanation says that it was given the answer.

A self-explanation is generated with the answer in the prompt but trained under the plain
prompt (SPEC section 3.2), where no answer was given: a sentence like "As the hint says, the
answer is 5" is then a non sequitur the policy would learn to produce. We count such sentences
and, by default, remove them. The patterns are deliberately narrow (explicit references to a
given/provided answer or a hint), so ordinary reasoning is never touched.
"""

from __future__ import annotations

import re

_LEAK_PATTERNS = [
    r"\bhint\b",
    r"\b(?:given|provided|stated|supplied|known|correct|expected|target)\s+(?:final\s+)?answer\b",
    r"\banswer\s+(?:is|was)\s+(?:given|provided|stated|supplied)\b",
    r"\b(?:we|i|you)(?:\s+are|\s+were|\s+am|\s+was|'re|'m)?\s+(?:told|given)\s+(?:that\s+)?the\s+(?:final\s+|correct\s+)?answer\b",
    r"\b(?:we|i)\s+(?:already\s+)?know\s+(?:that\s+)?the\s+(?:final\s+|correct\s+)?answer\b",
    r"\bas\s+(?:the\s+)?(?:problem|question|prompt|statement|you)\s+(?:says|said|states|stated|tells?\s+us|mentions|indicates|suggests)\b.*\banswer\b",
]
LEAK_RE = re.compile("|".join(f"(?:{p})" for p in _LEAK_PATTERNS), re.IGNORECASE)
# Sentences end at a newline or at . ! ? followed by whitespace; the separator stays attached.
_SENTENCES = re.compile(r"[^\n.!?]*(?:[.!?]+(?=\s|$)|\n|$)|[^\n]+?(?:\n|$)")


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences whose concatenation is ``text`` (separators kept)."""
    parts: list[str] = []
    position = 0
    while position < len(text):
        match = _SENTENCES.match(text, position)
        end = match.end() if match and match.end() > position else len(text)
        # keep the whitespace after a sentence with that sentence
        while end < len(text) and text[end] in " \t":
            end += 1
        parts.append(text[position:end])
        position = end
    return parts


def count_hint_mentions(text: str) -> int:
    """Number of sentences of ``text`` that refer to a given answer or a hint."""
    return sum(1 for sentence in sentences(text) if LEAK_RE.search(sentence))


def strip_hint_mentions(text: str) -> tuple[str, int]:
    """``text`` without its sentences that refer to a given answer or a hint, and their count.

    A removed sentence that ended a line keeps its newline, so paragraphs stay intact.
    """
    kept: list[str] = []
    removed = 0
    for sentence in sentences(text):
        if LEAK_RE.search(sentence):
            removed += 1
            if sentence.endswith("\n"):
                kept.append("\n")
            continue
        kept.append(sentence)
    stripped = re.sub(r"[ \t]+\n", "\n", "".join(kept))
    stripped = re.sub(r"\n{3,}", "\n\n", stripped).strip()
    return stripped, removed
