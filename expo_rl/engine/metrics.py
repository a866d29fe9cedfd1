"""Per-step metrics: one JSON line per step in ``metrics.jsonl``, plus the scalars to each backend of
``report_to`` (TensorBoard, wandb, trackio: :mod:`expo_rl.engine.loggers`).

Keys are flat strings such as ``reward/mean``, ``grpo/objective``, ``optim/lr``, ``time/step_s``.
Keys under ``time/`` are wall-clock timings and are the only values that differ between an
interrupted-and-resumed run and an uninterrupted one. On resume, lines past the checkpoint's
step (logged before the crash but not covered by a checkpoint) are dropped so the file never
holds two versions of a step.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expo_rl.data.jsonl import read_json_lines
from expo_rl.engine.loggers import open_backends

TIMING_PREFIX = "time/"


class MetricsLogger:
    """Writes metrics on the main process; a no-op elsewhere (``enabled=False``)."""

    def __init__(self, out_dir: str | Path, *, enabled: bool = True, tensorboard: bool = True,
                 resume_step: int | None = None, report_to: Sequence[str] | None = None,
                 project: str = "expo-rl", run_config: dict[str, Any] | None = None) -> None:
        """``report_to`` None: TensorBoard when ``tensorboard`` (the older switch), else nothing."""
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._backends: list[Any] = []
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        else:
            kept = [r for r in read_metrics(self.path) if r["step"] <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        targets = report_to if report_to is not None else (["tensorboard"] if tensorboard else [])
        self._backends = open_backends(targets, out_dir, project=project, config=run_config,
                                       resume_step=resume_step)

    def log(self, step: int, values: dict[str, Any]) -> None:
        """Append ``{"step": step, **values}``; non-finite floats are written as null."""
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in sorted(values.items())}}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        scalars = {k: v for k, v in row.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for backend in self._backends:
            backend.log(step, scalars)

    def close(self) -> None:
        for backend in self._backends:
            backend.close()
        self._backends = []


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All rows of a ``metrics.jsonl`` (a torn last line from a crash is skipped)."""
    return [row for _, row in read_json_lines(path, missing_ok=True, bad="skip")]


def without_timings(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row minus wall-clock keys: what must match between resumed and straight runs."""
    return {k: v for k, v in row.items() if not k.startswith(TIMING_PREFIX)}
