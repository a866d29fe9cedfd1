"""Read a JSONL file of problems (plain or ``.gz``), one JSON object per line, with file:line errors."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

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
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as error:
                sink.bad(RowError(where, f"not valid UTF-8 ({error.reason} at byte {error.start})"))
                continue
            except json.JSONDecodeError as error:
                sink.bad(RowError(where, f"invalid JSON ({error.msg} at column {error.colno})"))
                continue
            fields = add_row(sink, row, fields, where=where, source=source, default_id=f"{prefix}/{index}")
    return sink.result
