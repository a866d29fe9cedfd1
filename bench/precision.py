"""fp32 vs bf16 autocast on CPU (issue 15): step time and metrics of one fixed GRPO run each.

    python bench/precision.py                        # tiny:qwen2:20m, 6 steps, 2 rounds
    python bench/precision.py --policy tiny:qwen2 --steps 4 --rounds 1

The preset is ``grpo_sft_gt_cot`` (GRPO + an SFT term on the expert solution): a random tiny
model never earns the GRPO reward, so plain ``grpo`` has zero gradients and nothing to compare;
the SFT term moves the policy, which gives the GRPO term a KL and a ratio. Runs
``expo-rl train grpo_sft_gt_cot`` (same seed, same overrides) with ``train.mixed_precision`` set to
``no`` and to ``bf16``, alternating (no, bf16, no, bf16, ...) so that load on a shared machine
hits both alike, each in a fresh process with ``OMP_NUM_THREADS=--threads``. Reports per
precision the median ``time/step_s``, ``time/sample_s`` and ``time/update_s`` over the steps after
the first (warm-up), and the per-step metrics of the last round side by side (loss-related and
reward), so the change bf16 makes to a fixed run can be read off.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRECISIONS = ("'no'", "bf16")  # quoted: YAML reads a bare no as False
TIMES = ("time/step_s", "time/sample_s", "time/update_s")
METRICS = ("grpo/objective", "grpo/kl", "grpo/ratio", "gt_sft/objective", "grpo/response_len", "optim/grad_norm")


def run(precision: str, args: argparse.Namespace, out: Path) -> list[dict]:
    overrides = [f"model.policy={args.policy}", f"train.steps={args.steps}", "train.seed=0",
                 f"train.mixed_precision={precision}", f"sampling.max_new_tokens={args.new_tokens}",
                 "terms.0.source_args.questions_per_step=4", "terms.0.source_args.group_size=4",
                 "terms.1.source_args.questions_per_step=4",
                 f"train.output_dir={out}", "train.tensorboard=false", "train.progress=false", "train.plot=false",
                 "data.limit=64"]
    command = [sys.executable, "-m", "expo_rl.cli", "train", "grpo_sft_gt_cot", "--overwrite"]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(command, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="tiny:qwen2:20m", help="model.policy (default tiny:qwen2:20m)")
    parser.add_argument("--steps", type=int, default=6, help="training steps per run (default 6)")
    parser.add_argument("--new-tokens", type=int, default=48, help="sampling.max_new_tokens (default 48)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per precision, alternating (default 2)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default 1)")
    args = parser.parse_args()
    times: dict[str, dict[str, list[float]]] = {p: {k: [] for k in TIMES} for p in PRECISIONS}
    last: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for precision in PRECISIONS if round_ % 2 == 0 else PRECISIONS[::-1]:
                rows = run(precision, args, Path(tmp) / f"{precision.strip(chr(39))}_{round_}")
                for row in rows[1:]:
                    for key in TIMES:
                        times[precision][key].append(row[key])
                last[precision] = rows
                print(f"round {round_} {precision}: step_s {[round(r['time/step_s'], 2) for r in rows]}", flush=True)
    fp32, bf16 = PRECISIONS
    for key in TIMES:
        a, b = statistics.median(times[fp32][key]), statistics.median(times[bf16][key])
        print(f"{key}: fp32 {a:.2f} s, bf16 {b:.2f} s, fp32/bf16 {a / b:.2f}x")
    print("step  " + "  ".join(f"{m} (fp32 / bf16)" for m in METRICS))
    for row_a, row_b in zip(last[fp32], last[bf16]):
        cells = [f"{row_a.get(m, float('nan')):.4g} / {row_b.get(m, float('nan')):.4g}" for m in METRICS]
        print(f"{row_a.get('step', '?'):>4}  " + "  ".join(cells))


if __name__ == "__main__":
    main()
