"""Field mappings from data-set rows to :class:`Problem`, and the checks every row must pass.

A :class:`FieldMap` names, for each Problem field, the row key that holds it. Rules:

- ``question`` and ``answer`` must be present and non-empty (``answer`` may be a number);
- a field in ``required`` must be present as a key; ``level`` may then be ``null`` (unknown
  difficulty is a valid Problem: MATH has two such rows, originally "Level ?"), but a *missing*
  key is an incomplete row;
- ``level`` is a positive integer, ``"Level 3"``/``"3"`` (the Hendrycks MATH spelling), or null;
- GSM8K (``hash_answer=True``): the answer key holds ``<reasoning> #### <number>``; the number
  (thousands separators removed) is the answer, the reasoning (calculator annotations
  ``<<48/2=24>>`` removed) is the expert solution ``c_E``;
- conversational rows (TRL's format): the question key (``messages`` or ``prompt``, detected
  when the row has no ``question``) holds a list of ``{role, content}`` turns; the prompt turns
  go to ``Problem.extra["messages"]`` (the policy layer renders them with the chat template)
  and the last user turn's text is ``Problem.question``.
Row keys that no field uses are kept in ``Problem.extra``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.data.result import DataError, RowError, RowSink

PROBLEM_FIELDS = ("id", "question", "answer", "solution", "level", "subject")
_LEVEL_TEXT = re.compile(r"^\s*(?:level\s*)?(\d+|\?)\s*$", re.IGNORECASE)
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


@dataclass(frozen=True)
class FieldMap:
    """Row key for each Problem field (None: the data set has no such field)."""

    question: str = "question"
    answer: str = "answer"
    id: str | None = "id"
    solution: str | None = "solution"
    level: str | None = "level"
    subject: str | None = "subject"
    required: tuple[str, ...] = ("question", "answer")
    hash_answer: bool = False

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], base: FieldMap | None = None) -> FieldMap:
        """A FieldMap from ``{"question": "prompt", "answer": "target", ...}`` over ``base``."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - allowed)
        if unknown:
            raise DataError(f"field map keys {unknown} are not Problem fields; allowed: "
                            f"{', '.join(sorted(allowed))}")
        return replace(base or cls(), **dict(mapping))

    def keys_used(self) -> set[str]:
        return {getattr(self, name) for name in PROBLEM_FIELDS if getattr(self, name)}


MATH_FIELDS = FieldMap(question="problem", id="unique_id",
                       required=("id", "question", "answer", "solution", "level", "subject"))
"""The MATH / MATH-500 files: every key present; ``level`` may be null."""

GSM8K_FIELDS = FieldMap(question="question", answer="answer", id=None, solution=None, level=None,
                        subject=None, hash_answer=True)
"""GSM8K: ``question`` and ``answer`` = ``<reasoning> #### <number>``."""

SCHEMAS = {"math": MATH_FIELDS, "gsm8k": GSM8K_FIELDS, "generic": FieldMap()}


CHAT_KEYS = ("messages", "prompt")
CHAT_ROLES = ("system", "user", "assistant")


def parse_messages(value: Any, key: str) -> list[dict[str, str]]:
    """A conversational prompt (TRL's format): ``[{"role": ..., "content": ...}, ...]`` with roles
    system / user / assistant, ending (after any trailing assistant turns are dropped: they are
    the reply, not the prompt) with a non-empty user turn. Returns plain ``{role, content}`` dicts."""
    turns = []
    for n, turn in enumerate(value):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("content"), str):
            raise ValueError(f"field {key!r} turn {n}: expected {{'role': ..., 'content': <string>}}, "
                             f"got {turn!r:.60}")
        if turn.get("role") not in CHAT_ROLES:
            raise ValueError(f"field {key!r} turn {n}: role {turn.get('role')!r} is not allowed; "
                             f"allowed: {', '.join(CHAT_ROLES)}")
        turns.append({"role": turn["role"], "content": turn["content"]})
    while turns and turns[-1]["role"] == "assistant":
        turns.pop()
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise ValueError(f"field {key!r}: the conversation must end with a non-empty user turn "
                         "(before any assistant reply)")
    return turns


def detect_fields(row: Mapping[str, Any]) -> FieldMap:
    """Guess the mapping from one row's keys: MATH-like, GSM8K-like, or the generic names.

    The guess only names keys; it does not require the MATH keys, so a partial MATH-like
    file loads with what it has (pass an explicit map or ``schema="math"`` to require them).
    """
    if "problem" in row and "answer" in row:
        return replace(MATH_FIELDS, id="unique_id" if "unique_id" in row else "id",
                       subject="subject" if "subject" in row or "type" not in row else "type",
                       required=("question", "answer"))
    if "question" in row and isinstance(row.get("answer"), str) and "####" in row["answer"]:
        return GSM8K_FIELDS
    for key in CHAT_KEYS:  # TRL's conversational format: a list of {role, content} turns
        if "question" not in row and isinstance(row.get(key), list):
            return FieldMap(question=key)
    return FieldMap()


def _text(row: Mapping[str, Any], key: str, label: str, *, allow_number: bool = False) -> str:
    value = row[key]
    if allow_number and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        expected = "a string or a number" if allow_number else "a string"
        raise ValueError(f"field {key!r} ({label}): expected {expected}, got "
                         f"{type(value).__name__} {value!r:.60}")
    if not value.strip():
        raise ValueError(f"field {key!r} ({label}) is empty")
    return value.strip()


def parse_level(value: Any, key: str) -> int | None:
    """A difficulty level from an int, ``"Level 3"``, ``"3"``, ``"Level ?"`` or null."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"field {key!r} (level): expected a positive integer, got {value}")
        return value
    if isinstance(value, str):
        match = _LEVEL_TEXT.match(value)
        if match:
            return None if match.group(1) == "?" else parse_level(int(match.group(1)), key)
    raise ValueError(f"field {key!r} (level): expected a positive integer, 'Level N' or null, "
                     f"got {type(value).__name__} {value!r:.60}")


def split_hash_answer(text: str, key: str) -> tuple[str, str]:
    """GSM8K ``answer`` text -> (final answer, reasoning without calculator annotations)."""
    if "####" not in text:
        raise ValueError(f"field {key!r} (answer): no '#### <answer>' marker")
    reasoning, _, final = text.rpartition("####")
    final = _THOUSANDS.sub("", final.strip())
    if not final:
        raise ValueError(f"field {key!r} (answer): nothing after '####'")
    return final, _CALCULATOR.sub("", reasoning).strip()


def row_to_problem(row: Any, fmap: FieldMap, *, where: str, source: str,
                   default_id: str) -> Problem:
    """Validate one row and build its Problem; a RowError names ``where`` and the field."""
    try:
        return _convert(row, fmap, source=source, default_id=default_id)
    except ValueError as error:
        raise RowError(where, str(error)) from None


def add_row(sink: RowSink, row: Any, fmap: FieldMap | None, *, where: str, source: str,
            default_id: str) -> FieldMap | None:
    """Convert ``row`` into ``sink`` (a RowError is raised or counted by the sink), guessing the
    field map from the first object row when ``fmap`` is None; returns the map for later rows."""
    if fmap is None and isinstance(row, dict):
        fmap = detect_fields(row)
    try:
        problem = row_to_problem(row, fmap or FieldMap(), where=where, source=source, default_id=default_id)
    except RowError as error:
        sink.bad(error)
        return fmap
    sink.add(problem, where)
    return fmap


def _convert(row: Any, fmap: FieldMap, *, source: str, default_id: str) -> Problem:
    if not isinstance(row, Mapping):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    for name in ("question", "answer", *fmap.required):
        key = getattr(fmap, name)
        if key is not None and key not in row:
            raise ValueError(f"required field {key!r} ({name}) is missing")
    messages = None
    if fmap.question in CHAT_KEYS and isinstance(row[fmap.question], list):
        messages = parse_messages(row[fmap.question], fmap.question)
        question = messages[-1]["content"].strip()
    else:
        question = _text(row, fmap.question, "question")
    answer = _text(row, fmap.answer, "answer", allow_number=True)
    solution = ""
    if fmap.hash_answer:
        answer, solution = split_hash_answer(answer, fmap.answer)
    if fmap.solution and row.get(fmap.solution) is not None:
        if "solution" in fmap.required:
            solution = _text(row, fmap.solution, "solution")
        elif not isinstance(row[fmap.solution], str):
            raise ValueError(f"field {fmap.solution!r} (solution): expected a string, got "
                             f"{type(row[fmap.solution]).__name__}")
        else:
            solution = row[fmap.solution].strip()
    elif fmap.solution and "solution" in fmap.required:
        raise ValueError(f"field {fmap.solution!r} (solution) is null")
    problem_id = default_id
    if fmap.id and row.get(fmap.id) is not None:
        problem_id = _text(row, fmap.id, "id", allow_number=True)
    elif fmap.id and "id" in fmap.required:
        raise ValueError(f"field {fmap.id!r} (id) is null")
    level = parse_level(row.get(fmap.level), fmap.level) if fmap.level else None
    subject = None
    if fmap.subject and row.get(fmap.subject) is not None:
        subject = _text(row, fmap.subject, "subject")
    extra = {k: v for k, v in row.items() if k not in fmap.keys_used() and k not in PROBLEM_FIELDS}
    if fmap.hash_answer:
        extra["raw_answer"] = row[fmap.answer]
    if messages is not None:
        extra["messages"] = messages
    return Problem(id=problem_id, question=question, answer=answer, solution=solution,
                   level=level, subject=subject, source=source, extra=extra)
