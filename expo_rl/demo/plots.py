"""PNG figures of the demo report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expo_rl.demo.jobs import RunResult


def _pyplot():
    # optional and slow to import: only the report's figures need it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def learning_curves(records: list[RunResult], label: str, levels: tuple[int, ...], path: Path) -> None:
    """Training-rollout accuracy per level (moving average, first seed) and held-out curve
    points (pass@1, mean over seeds) of one method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.cm.viridis([i / max(1, len(levels) - 1) for i in range(len(levels))])
    first = records[0]
    window = max(1, len(first.steps) // 15)
    for color, level in zip(colors, levels):
        key = f"grpo/accuracy/L{level}"
        series = first.series(key)
        if series:
            ax.plot(range(1, len(series) + 1), moving_average(series, window), color=color, alpha=0.55,
                    label=f"L{level} train rollouts")
        points = _mean_curve(records, f"L{level}")
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], "o--", color=color,
                    label=f"L{level} held-out")
    ax.set_xlabel("training step")
    ax.set_ylabel("accuracy (pass@1)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(label)
    if ax.get_legend_handles_labels()[0]:  # a DPO run logs no rollout accuracy; a tiny one may have no eval
        ax.legend(fontsize=7, ncol=2)
    save(fig, path)


def _mean_curve(records: list[RunResult], key: str) -> list[tuple[int, float]]:
    by_step: dict[int, list[float]] = {}
    for record in records:
        for point in record.curve:
            if key in point:
                by_step.setdefault(point["step"], []).append(point[key])
    return [(step, sum(v) / len(v)) for step, v in sorted(by_step.items())]


def zero_signal(records_by_method: dict[str, list[RunResult]], labels: dict[str, str], path: Path) -> None:
    """Fraction of GRPO groups with no signal (all rewards equal) per step, first seed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, records in records_by_method.items():
        series = records[0].series("grpo/zero_signal_fraction")
        wrong = records[0].series("grpo/all_wrong_fraction")
        if series:
            window = max(1, len(series) // 15)
            line, = ax.plot(range(1, len(series) + 1), moving_average(series, window), label=f"{labels[name]}: all equal")
            ax.plot(range(1, len(wrong) + 1), moving_average(wrong, window), ":", color=line.get_color(),
                    label=f"{labels[name]}: all wrong")
    ax.set_xlabel("training step")
    ax.set_ylabel("fraction of groups")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Zero-signal GRPO groups (no advantage)")
    ax.legend(fontsize=7)
    save(fig, path)


def histograms(diagnostics: dict[str, Any], key: str, xlabel: str, path: Path) -> None:
    """Overlaid histograms of ``key`` ('nll' or 'reachability') per completion kind."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    plotted = False
    for kind in ("self_explanation", "expert", "own"):
        values = diagnostics.get(kind, {}).get(key) or []
        if values:
            ax.hist(values, bins=30, alpha=0.5, label=f"{kind} (n={len(values)})")
            plotted = True
    ax.set_xlabel(xlabel)
    ax.set_ylabel("completions")
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    save(fig, path)


def dpo_loss_vs_accuracy(records_by_method: dict[str, list[RunResult]], labels: dict[str, str],
                         level_key: str, path: Path) -> None:
    """Figure 6 shape: DPO loss per step (left) and held-out accuracy (right) per method."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, records in records_by_method.items():
        loss = records[0].series("dpo/loss")
        if not loss:
            continue
        line, = left.plot(range(1, len(loss) + 1), moving_average(loss, max(1, len(loss) // 15)), label=labels[name])
        points = _mean_curve(records, level_key)
        right.plot([p[0] for p in points], [p[1] for p in points], "o-", color=line.get_color(), label=labels[name])
    left.set_xlabel("training step")
    left.set_ylabel("DPO loss")
    left.set_title("DPO loss")
    right.set_xlabel("training step")
    right.set_ylabel(f"held-out pass@1 ({level_key})")
    right.set_ylim(-0.02, 1.02)
    right.set_title("accuracy")
    left.legend(fontsize=7)
    save(fig, path)


def save(fig: Any, path: Path) -> None:
    """Lay out, write the PNG and free the figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
