"""Append-only JSONL files that survive a crash mid-write (caches, explanation banks, records).

A process killed while appending leaves a torn last line (no newline, partial JSON). Readers skip
it (``expo_rl.data.jsonl.read_json_lines(..., bad="warn")``), and :func:`append_records` first cuts it off, so the next record starts on a
line of its own instead of being glued to the fragment and lost with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


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
