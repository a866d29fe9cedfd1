"""Peer benchmark: TRL's GRPOTrainer / DPOTrainer vs expo-rl's runtime, same work, one command.

    python bench/peer.py                                   # everything (make bench); ~30+ min on 2 cores
    python bench/peer.py --methods grpo --sizes 1m --steps 3 --warmup 1

For every (method, size, workload) cell it builds the model directory and the data files once,
then runs each side in a fresh subprocess on ``--threads`` torch threads (peak memory =
that process's RSS high-water mark), measures the machine's fp32 matmul peak first, and writes
``bench/results/peer.json`` shaped ``{method: {size: {workload: {...}}}}`` (cells of an earlier
run that were not re-run are kept) plus ``peer_meta.json`` (machine, load, command). See
bench/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import report  # noqa: E402
import workloads as W  # noqa: E402

SIDES = ("trl", "ours")
SIZES = ("1m", "20m")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", default="grpo,dpo", help="comma list of: grpo, dpo")
    parser.add_argument("--sizes", default="1m,20m", help="comma list of model sizes: 1m, 20m")
    parser.add_argument("--workloads", default="uniform,realistic", help="comma list of: uniform, realistic")
    parser.add_argument("--sides", default="trl,ours", help="comma list of: trl, ours (both are needed for a ratio)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per side and cell (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps before the timed ones")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each side (torch.set_num_threads)")
    parser.add_argument("--variant", default="shipped", choices=("shipped", "unbucketed"),
                        help="our side: the runtime as shipped, or (ablation) without its length bucketing")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                        help="both sides: fp32, or bf16 autocast (TRL bf16=True, expo-rl mixed_precision bf16); "
                             "write bf16 results to another --out")
    parser.add_argument("--dpo-pairs", type=int, default=64, help="DPO pairs per step, uniform workload")
    parser.add_argument("--dpo-realistic-pairs", type=int, default=16,
                        help="DPO pairs per step, realistic workload (16 keeps a 20m step near 2-4 min on 1 thread)")
    parser.add_argument("--big-steps", type=int, default=None,
                        help="timed steps of the 20m cells (default: --steps); a 20m realistic step takes minutes")
    parser.add_argument("--micro-batch-rows", type=int, default=W.HParams.micro_batch_rows,
                        help="sequences per forward/backward on both sides (DPO: half as many pairs)")
    parser.add_argument("--smoke", action="store_true",
                        help="shrink every workload to a few short rows (for the smoke test; figures meaningless)")
    parser.add_argument("--workdir", default=str(BENCH / ".cache"), help="model directories and data files")
    parser.add_argument("--out", default=str(BENCH / "results" / "peer.json"), help="results JSON (merged into)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per side and cell")
    args = parser.parse_args(argv)
    for name, allowed in (("methods", W.METHODS), ("sizes", SIZES), ("workloads", W.WORKLOADS), ("sides", SIDES)):
        values = [v.strip() for v in getattr(args, name).split(",") if v.strip()]
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            parser.error(f"--{name}: {', '.join(bad) or '(empty)'} not allowed; allowed: {', '.join(allowed)}")
        setattr(args, name, values)
    if args.steps < 1 or args.warmup < 0 or (args.big_steps is not None and args.big_steps < 1):
        parser.error("--steps and --big-steps must be >= 1 and --warmup >= 0")
    return args


def run_subprocess(argv: list[str], threads: int, timeout: float) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, str(BENCH / "side.py"), *argv], env=env, timeout=timeout,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bench/side.py {' '.join(argv)} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def measure_peak(threads: int, smoke: bool, timeout: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peak.json"
        argv = ["--matmul-peak", str(out), "--threads", str(threads)] + (["--small"] if smoke else [])
        run_subprocess(argv, threads, timeout)
        return json.loads(out.read_text())


def workload_for(args: argparse.Namespace, method: str, name: str) -> W.Workload:
    pairs = args.dpo_pairs if name == "uniform" else args.dpo_realistic_pairs
    workload = W.make_workload(method, name, pairs_per_step=pairs)
    if args.smoke:
        workload = replace(workload, questions_per_step=2, group_size=2, pairs_per_step=2,
                           max_new_tokens=min(workload.max_new_tokens, 8))
    return workload


def run_cell(args: argparse.Namespace, method: str, size: str, name: str, hp: W.HParams, tokenizer: Any,
             peak: dict[str, float]) -> dict[str, Any]:
    import models

    workdir = Path(args.workdir)
    workload = workload_for(args, method, name)
    steps = args.big_steps if size == "20m" and args.big_steps is not None else args.steps
    model_dir = models.build_model_dir(workdir / "models", size, workload.eos_logit_bias, seed=hp.seed)
    files = W.build_data(workload, steps + args.warmup, workdir / "data", tokenizer, seed=hp.seed)
    differ = W.check_tokenisation(tokenizer, workload, files)
    if differ["prompts"] or differ["completions"]:
        print(f"  note: token ids differ between the sides on {differ} rows", flush=True)
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for side in args.sides:
            spec = {"side": side, "workload": workload.to_dict(), "hparams": asdict(hp), "model_dir": str(model_dir),
                    "files": files, "steps": steps, "warmup": args.warmup, "threads": args.threads,
                    "variant": args.variant, "precision": args.precision}
            spec_path, out_path = Path(tmp) / f"{side}.spec.json", Path(tmp) / f"{side}.out.json"
            spec_path.write_text(json.dumps(spec))
            started = time.perf_counter()
            run_subprocess([str(spec_path), str(out_path)], args.threads, args.timeout)
            results[side] = json.loads(out_path.read_text())
            print(f"  {side:<4} done in {time.perf_counter() - started:5.0f} s "
                  f"(s/step: {', '.join(f'{t:.2f}' for t in results[side]['step_s'])})", flush=True)
    cell = report.cell_summary(results, args.warmup, method, peak["peak_flops"])
    cell.update({"workload": workload.to_dict(), "steps": steps, "warmup": args.warmup,
                 "threads": args.threads, "variant": args.variant, "precision": args.precision,
                 "params": results[args.sides[0]]["params"],
                 "matmul_peak_gflops": peak["peak_flops"] / 1e9, "token_id_mismatches": differ,
                 "load_avg_1m": [load_before[0], os.getloadavg()[0]],
                 "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return cell


def load_results(path: Path) -> dict[str, Any]:
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            print(f"warning: {path} is not valid JSON; starting a new one", file=sys.stderr)
    return {}


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from expo_rl.policy import load_tiny_tokenizer

    hp = W.HParams(micro_batch_rows=args.micro_batch_rows if not args.smoke else 2)
    out = Path(args.out)
    results = load_results(out)
    print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine; figures are only comparable at low load)")
    peak = measure_peak(args.threads, args.smoke, args.timeout)
    print(f"fp32 matmul peak on {args.threads} threads: {peak['peak_flops'] / 1e9:.1f} GFLOP/s", flush=True)
    tokenizer = load_tiny_tokenizer()
    for method in args.methods:
        for size in args.sizes:
            for name in args.workloads:
                print(f"[{method} {size} {name}]", flush=True)
                cell = run_cell(args, method, size, name, hp, tokenizer, peak)
                results.setdefault(method, {}).setdefault(size, {})[name] = cell
                write_json(out, results)
    meta = {"command": " ".join([Path(sys.executable).name, "bench/peer.py", *(argv or sys.argv[1:])]),
            "matmul_peak": peak, "cpu_count": os.cpu_count(), "load_avg_after": os.getloadavg(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_json(out.with_name(out.stem + "_meta.json"), meta)
    print()
    print(report.format_table({m: {s: {w: results[m][s][w] for w in args.workloads} for s in args.sizes}
                               for m in args.methods}))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
