"""``expo-rl plot RUN_DIR``: learning curves (PNG) of any training run from its ``metrics.jsonl``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw learning curves (PNG) of a training run from its metrics.jsonl",
        description=__doc__ + "\nOne PNG per key prefix (the term, optim, time, eval, ...), one panel per key.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run's output_dir (holding metrics.jsonl), or the metrics.jsonl file itself")
    parser.add_argument("--out", default=None, help="folder for the PNG files (default: RUN_DIR/plots)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from expo_rl.engine.curves import plot_metrics

    source = Path(args.run_dir)
    folder = source if source.is_dir() else source.parent
    try:
        written = plot_metrics(source, args.out or folder / "plots", title=folder.resolve().name)
    except FileNotFoundError as error:
        print(f"expo-rl plot: {error}", file=sys.stderr)
        return 2
    if not written:
        print(f"expo-rl plot: {source} has no metrics yet", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
