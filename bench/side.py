"""Subprocess entry of the peer benchmark: one side of one cell, or the matmul-peak measurement.

    python bench/side.py SPEC.json OUT.json     # SPEC: side, workload, hparams, model_dir, files, steps, ...
    python bench/side.py --matmul-peak OUT.json [--small] [--threads N]

Each run is a fresh process, so ``ru_maxrss`` (the resident-set high-water mark) is the peak
memory of that side on that cell alone: model, reference model, optimiser state, activations,
and the libraries it imports.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

THREADS = 2


def set_threads(threads: int = THREADS) -> None:
    import torch

    torch.set_num_threads(threads)


def peak_rss_mib() -> float:
    """High-water resident set of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_peak(size: int = 2048, repeats: int = 12, threads: int = THREADS) -> dict[str, float]:
    """Best fp32 FLOP/s of ``size x size`` matmuls on ``threads`` threads (2 n^3 FLOPs each); the
    best of many repeats, so that a shared machine's load lowers it as little as possible."""
    import torch

    set_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(2):
        torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - started)
    flops = 2.0 * size**3
    times.sort()
    return {"peak_flops": flops / times[0], "median_flops": flops / times[len(times) // 2], "size": size,
            "threads": threads, "repeats": repeats}


def main(argv: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if argv[:1] == ["--matmul-peak"]:
        small = "--small" in argv[2:]  # the smoke test: a quick, rough figure
        threads = int(argv[argv.index("--threads") + 1]) if "--threads" in argv else THREADS
        Path(argv[1]).write_text(json.dumps(matmul_peak(512 if small else 2048, 3 if small else 30,
                                                        threads=threads)))
        return 0
    spec = json.loads(Path(argv[0]).read_text())
    set_threads(spec.get("threads", THREADS))
    import models

    started = time.perf_counter()
    if spec["side"] == "trl":
        import side_trl as side
    elif spec["side"] == "ours":
        import side_ours as side
    else:
        raise SystemExit(f"unknown side {spec['side']!r}; allowed: trl, ours")
    result = side.run(spec)
    result["wall_s"] = time.perf_counter() - started
    result["peak_rss_mib"] = peak_rss_mib()
    result["params"] = models.parameter_counts(models.load_model(spec["model_dir"]))
    Path(argv[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
