"""Learning curves of a run from its ``metrics.jsonl`` (:mod:`expo_rl.engine.metrics`), as PNG files.

One figure per key prefix (``grpo/...``, ``optim/...``, ``time/...``, ``eval/...``): a grid with
one panel per numeric key, value against step. Steps where a key is missing or null (a term
without rows that step, a non-finite value) are gaps, not zeros.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (CI, remote machines)
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from expo_rl.engine.metrics import read_metrics  # noqa: E402

COLUMNS = 3


def series(rows: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` for every numeric key (booleans and nulls left out)."""
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for row in rows:
        step = row.get("step")
        if not isinstance(step, int):
            continue
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[key].append((step, float(value)))
    return dict(out)


def plot_metrics(metrics: str | Path, out_dir: str | Path, *, title: str | None = None) -> list[Path]:
    """Draw ``<out_dir>/<prefix>.png`` for each key prefix of ``metrics`` (a metrics.jsonl file or
    the run folder holding it); returns the files written (none for an empty log)."""
    path = Path(metrics)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path} (expected <run dir>/metrics.jsonl)")
    data = series(read_metrics(path))
    groups: dict[str, list[str]] = defaultdict(list)
    for key in sorted(data):
        groups[key.split("/", 1)[0] if "/" in key else "other"].append(key)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for group, keys in groups.items():
        rows = math.ceil(len(keys) / COLUMNS)
        cols = min(COLUMNS, len(keys))
        fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            steps, values = zip(*data[key])
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        fig.suptitle(f"{title + ': ' if title else ''}{group}", fontsize=11)
        fig.tight_layout()
        target = out / f"{group.replace('/', '_')}.png"
        fig.savefig(target, dpi=100)
        plt.close(fig)
        written.append(target)
    return written
