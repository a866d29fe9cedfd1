"""Append-only JSONL files that survive a crash mid-write (caches, explanation banks, records).

A process killed while appending leaves a torn last line (no newline, partial JSON). Readers skip
it (with a warning), and :func:`append_records` first cuts it off, so the next record starts on a
line of its own instead of being glued to the fragment and lost with it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_records(path: str | Path, *, what: str = "record") -> list[dict[str, Any]]:
    """The JSON objects of ``path`` in order (missing file: empty); unreadable lines (a torn last
    line after a crash) are skipped with a warning naming file and line."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                print(f"warning: {path}:{line_no}: unreadable {what} skipped (interrupted write?)",
                      file=sys.stderr)
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def repair_tail(path: str | Path) -> int:
    """Cut a torn last line (bytes after the last newline) off ``path``; returns bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        block = min(size, 1 << 16)
        end = size
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            cut = chunk.rfind(b"\n")
            if cut != -1:
                keep = start + cut + 1
                break
            end = start
        else:
            keep = 0
        if keep < size:
            handle.truncate(keep)
        return size - keep


def append_records(path: str | Path, rows: Iterable[dict[str, Any]], *, ensure_ascii: bool = True) -> None:
    """Append ``rows`` as JSON lines (torn tail cut first; flushed and fsync'ed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
