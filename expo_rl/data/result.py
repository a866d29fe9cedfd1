"""What a loader returns, and how it treats bad rows: raise with file and line, or skip and count."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from expo_rl.data.records import Problem

OnError = Literal["raise", "skip"]
ON_ERROR_CHOICES = ("raise", "skip")


class DataError(ValueError):
    """Bad data or a bad data request; the message names the file/line (or the option) at fault."""


class RowError(DataError):
    """One malformed row: ``where`` is ``path:line`` (JSONL) or ``dataset [split] row N`` (HF)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.reason = message


@dataclass
class LoadResult:
    """Problems read from one data set, plus an account of everything not returned.

    ``skipped``/``skip_reasons``: malformed rows left out under ``on_error="skip"`` (each
    reason is ``"<file>:<line>: <what is wrong>"``); ``blank_lines``: empty lines of a JSONL
    file (not rows, so never an error); ``n_rows``: valid rows read; ``filtered_out``: valid
    rows removed by the level/subject/limit filters. Iterating yields the problems.
    """

    problems: list[Problem]
    source: str
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    blank_lines: int = 0
    n_rows: int = 0
    filtered_out: int = 0

    def __len__(self) -> int:
        return len(self.problems)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.problems)

    def summary(self) -> str:
        """One line for logs: counts of loaded, skipped, blank and filtered rows."""
        text = f"{len(self.problems)} problems from {self.source}"
        if self.skipped:
            text += f"; {self.skipped} malformed rows skipped (first: {self.skip_reasons[0]})"
        if self.filtered_out:
            text += f"; {self.filtered_out} removed by filters"
        return text


def check_on_error(on_error: str) -> None:
    """Reject an ``on_error`` value other than 'raise' or 'skip'."""
    if on_error not in ON_ERROR_CHOICES:
        raise DataError(f"on_error={on_error!r}: allowed values are {', '.join(ON_ERROR_CHOICES)}")


class RowSink:
    """Collects converted rows; a RowError is raised (``raise``) or recorded (``skip``)."""

    def __init__(self, on_error: OnError, source: str) -> None:
        check_on_error(on_error)
        self.on_error = on_error
        self.result = LoadResult(problems=[], source=source)
        self._seen_ids: dict[str, str] = {}

    def bad(self, error: RowError) -> None:
        if self.on_error == "raise":
            raise error
        self.result.skipped += 1
        self.result.skip_reasons.append(str(error))

    def add(self, problem: Problem, where: str) -> None:
        # Duplicate ids would silently merge two problems in per-problem tables.
        first = self._seen_ids.get(problem.id)
        if first is not None:
            self.bad(RowError(where, f"duplicate id {problem.id!r} (first seen at {first})"))
            return
        self._seen_ids[problem.id] = where
        self.result.problems.append(problem)
        self.result.n_rows += 1
