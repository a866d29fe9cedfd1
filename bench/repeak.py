"""Re-measure the fp32 matmul peak and recompute the ``*_peak_fraction`` fields of a results file.

    python bench/repeak.py [--threads 1] [--results bench/results/peer.json]

The step times and FLOP counts are kept; only the denominator changes. Used once for the run in
bench/README.md, whose peer.py measured the peak on 2 threads (a bug, fixed since) while both
sides ran on 1. The new peak, its thread count and the time are recorded in each cell
(``matmul_peak_gflops``, ``matmul_peak_threads``, ``matmul_peak_remeasured``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import peer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(BENCH / "results" / "peer.json"))
    args = parser.parse_args()
    peak = peer.measure_peak(args.threads, smoke=False, timeout=600)
    path = Path(args.results)
    results = json.loads(path.read_text())
    for sizes in results.values():
        for workloads in sizes.values():
            for cell in workloads.values():
                for side in ("trl", "ours"):
                    if f"{side}_flops_per_s" in cell:
                        cell[f"{side}_peak_fraction"] = cell[f"{side}_flops_per_s"] / peak["peak_flops"]
                cell.update({"matmul_peak_gflops": peak["peak_flops"] / 1e9, "matmul_peak_threads": args.threads,
                             "matmul_peak_remeasured": time.strftime("%Y-%m-%d %H:%M:%S")})
    peer.write_json(path, results)
    meta_path = path.with_name(path.stem + "_meta.json")
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        meta["matmul_peak_first_measured"] = meta.get("matmul_peak")
        meta["matmul_peak"] = peak
        peer.write_json(meta_path, meta)
    print(f"fp32 matmul peak on {args.threads} thread(s): {peak['peak_flops'] / 1e9:.1f} GFLOP/s "
          f"(median {peak['median_flops'] / 1e9:.1f}); fractions in {path} recomputed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
