"""Profile our side on one benchmark cell: cProfile of ``side_ours.run`` (warm-up + timed steps).

    python bench/profile_ours.py --method dpo --size 1m --workload realistic --steps 1 [--variant unbucketed]

Prints the top functions by cumulative and by own time (torch ops show up as their Python
entry points: ``linear``, ``scaled_dot_product_attention``, ``run_backward``, ...). Uses the
model and data that ``peer.py`` cached under ``bench/.cache`` (built here if missing).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from dataclasses import asdict
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="dpo", choices=("grpo", "dpo"))
    parser.add_argument("--size", default="1m", choices=("1m", "20m"))
    parser.add_argument("--workload", default="realistic", choices=("uniform", "realistic"))
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pairs", type=int, default=16, help="DPO pairs per step")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", default="shipped", choices=("shipped", "unbucketed"))
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    import models
    import side_ours
    import workloads as W

    from expo_rl.policy import load_tiny_tokenizer

    hp = W.HParams()
    workload = W.make_workload(args.method, args.workload, pairs_per_step=args.pairs)
    root = BENCH / ".cache"
    model_dir = models.build_model_dir(root / "models", args.size, workload.eos_logit_bias, seed=hp.seed)
    files = W.build_data(workload, args.steps + args.warmup, root / "data", load_tiny_tokenizer(), seed=hp.seed)
    spec = {"side": "ours", "workload": workload.to_dict(), "hparams": asdict(hp), "model_dir": str(model_dir),
            "files": files, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
            "variant": args.variant}
    profiler = cProfile.Profile()
    result = profiler.runcall(side_ours.run, spec)
    print("step_s:", [round(t, 3) for t in result["step_s"]], "phases:", result["phases"])
    for key in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
