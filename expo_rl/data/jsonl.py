"""JSONL files (plain or ``.gz``), one JSON value per line, with ``file:line`` errors:
:func:`read_json_lines` is the one reader of every JSONL file the package reads (caches, pair
files, metrics), and :func:`read_jsonl` reads problems through it line by line."""

from __future__ import annotations

import gzip
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from expo_rl.data.result import DataError, LoadResult, OnError, RowError, RowSink
from expo_rl.data.schema import FieldMap, add_row


def read_jsonl(path: str | os.PathLike[str], fields: FieldMap | None = None, *, source: str = "",
               id_prefix: str | None = None, on_error: OnError = "raise") -> LoadResult:
    """Problems from ``path``; ``fields=None`` guesses the mapping from the first object row.

    A row without an id gets ``<id_prefix>/<row index>`` (0-based over non-blank lines, so ids
    stay stable when another row is skipped). Bad JSON, a non-object, a missing/empty/mistyped
    field or a duplicate id raise a :class:`RowError` naming ``path:line`` and the field, or
    with ``on_error="skip"`` are counted in ``skipped``/``skip_reasons``. Blank lines are
    counted in ``blank_lines``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} does not exist")
    source = source or path.name.removesuffix(".gz").rsplit(".", 1)[0]
    prefix = id_prefix or source
    sink = RowSink(on_error, str(path))
    row_index = 0
    # Binary mode: a bad byte sequence becomes an error on its own line, not a crash mid-file.
    with (gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")) as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                sink.result.blank_lines += 1
                continue
            where = f"{path}:{line_number}"
            index, row_index = row_index, row_index + 1
            try:
                row = decode_json_line(raw)
            except ValueError as error:
                sink.bad(RowError(where, str(error)))
                continue
            fields = add_row(sink, row, fields, where=where, source=source, default_id=f"{prefix}/{index}")
    return sink.result


def decode_json_line(raw: bytes | str) -> Any:
    """The JSON value of one line; a ValueError says why not (bad UTF-8 or bad JSON, with where)."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as error:
        raise ValueError(f"not valid UTF-8 ({error.reason} at byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON ({error.msg} at column {error.colno})") from None


def read_json_lines(path: str | os.PathLike[str], *, missing_ok: bool = False,
                    bad: Literal["raise", "warn", "skip"] = "raise") -> list[tuple[int, Any]]:
    """``(line number, value)`` for each non-blank line of ``path`` (1-based line numbers, for the
    caller's own ``file:line`` messages).

    A line that is not JSON raises a :class:`DataError` naming ``path:line``; ``bad="warn"``
    prints that to stderr and skips the line, ``bad="skip"`` skips it silently (append-only caches
    and metrics, where a crash can leave a torn last line). A missing file raises
    FileNotFoundError, or gives ``[]`` with ``missing_ok``.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    values = []
    with path.open("rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                values.append((line_number, decode_json_line(raw)))
            except ValueError as error:
                message = f"{path}:{line_number}: {error}"
                if bad == "raise":
                    raise DataError(message) from None
                if bad == "warn":
                    print(f"warning: {message}; line skipped (an interrupted write?)", file=sys.stderr)
    return values
