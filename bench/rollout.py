"""Rollout benchmark (issue 12): tokens/s of the rollout engines on the same prompts, one process.

    VLLM_ENABLE_V1_MULTIPROCESSING=0 .venv-vllm/bin/python bench/rollout.py      # make bench-rollout
    ... bench/rollout.py --models tiny:qwen2:20m --prompts 16 --new-tokens 32   # a quick look

For each model (fp32, ``--threads`` torch threads) and engine, in a fresh subprocess (vLLM's CPU
worker binds the process's OpenMP threads to cores, which would also change the speed of an
engine measured after it in the same process), it samples ``--prompts`` prompts x 1
completion of up to ``--new-tokens`` tokens at temperature 1 (EOS allowed, so tokens/s counts the
tokens actually generated), after one untimed warm-up call, and writes
``bench/results/rollout.json``:

* ``hf``: expo-rl's built-in decode loop (``expo_rl.policy.sample``, compact engine);
* ``vllm``: the vLLM engine (``expo_rl.rollout.vllm``, in-process, CPU backend here);
* ``trl_generate``: ``transformers`` ``model.generate`` on left-padded batches, which is how TRL's
  GRPOTrainer generates when it does not use vLLM (``use_vllm=False``); with ``use_vllm=True`` TRL
  calls the same ``vllm.LLM.generate`` as the ``vllm`` row. Measured through
  ``expo_rl.policy.sample(engine="generate")`` so all rows share prompts and stopping rules.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from expo_rl.policy import build_prompt, load_policy, sample  # noqa: E402
from expo_rl.rollout import SamplingSettings, make_engine  # noqa: E402


def prompts_for(tokenizer, count: int) -> list[str]:
    questions = [f"What is {a} + {b} * {a + b}? Explain each step." for a, b in
                 ((i % 17 + 2, i % 13 + 3) for i in range(count))]
    return [build_prompt(tokenizer, q) for q in questions]


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def bench_model(spec: str, engines: list[str], args: argparse.Namespace) -> dict:
    model, tokenizer = load_policy(spec)
    model.eval()
    prompts = prompts_for(tokenizer, args.prompts)
    warm = prompts[: min(4, len(prompts))]
    results: dict[str, dict] = {"params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    for engine in engines:
        if engine == "vllm":
            load_s, vllm_engine = timed(lambda: make_engine(
                "vllm", model, tokenizer, SamplingSettings(temperature=1.0, max_new_tokens=args.new_tokens)))
            def run(ps, engine_=vllm_engine):
                return engine_.sample(model, ps, n=1, seed=0)
        else:
            load_s = 0.0
            kind = "generate" if engine == "trl_generate" else "compact"

            def run(ps, kind=kind):
                with torch.no_grad():
                    return sample(model, tokenizer, ps, n=1, temperature=1.0, max_new_tokens=args.new_tokens,
                                  seed=0, engine=kind)
        run(warm)
        seconds, batch = timed(lambda run=run: run(prompts))
        tokens = sum(len(c) for c in batch.completion_ids)
        results[engine] = {"tokens": tokens, "seconds": round(seconds, 2),
                           "tokens_per_s": round(tokens / seconds, 1), "engine_load_s": round(load_s, 1)}
        print(f"{spec} {engine}: {tokens} tokens in {seconds:.1f} s = {tokens / seconds:.0f} tok/s", flush=True)
        if engine == "vllm":
            vllm_engine.close()
            del vllm_engine
    if "hf" in results and "vllm" in results:
        results["vllm_over_hf"] = round(results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"], 2)
    return results


def isolated(spec: str, engine: str, args: argparse.Namespace) -> dict:
    """``bench_model(spec, [engine])`` in a fresh Python process; its result dict."""
    import subprocess

    command = [sys.executable, __file__, "--single", "--models", spec, "--engines", engine,
               "--prompts", str(args.prompts), "--new-tokens", str(args.new_tokens), "--threads", str(args.threads)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    line = next(x for x in reversed(out.stdout.splitlines()) if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    print(f"{spec} {engine}: {result.get(engine, result)}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny:qwen2:20m,gemma3-270m")
    parser.add_argument("--engines", default="hf,vllm,trl_generate")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "rollout.json"))
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per (model, engine) process")
    parser.add_argument("--single", action="store_true", help="(internal) measure in this process, print RESULT")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.single:
        print("RESULT " + json.dumps(bench_model(args.models, args.engines.split(","), args)), flush=True)
        return 0
    import vllm

    results = {"meta": {"command": " ".join(sys.argv), "prompts": args.prompts, "new_tokens": args.new_tokens,
                        "threads": args.threads, "dtype": "float32", "torch": torch.__version__,
                        "vllm": vllm.__version__, "machine": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()[0]}}
    for spec in args.models.split(","):
        cell: dict = {}
        for engine in args.engines.split(","):
            part = isolated(spec, engine, args)
            cell.update({k: v for k, v in part.items() if k != "error"})
            if "error" in part:
                cell[engine] = {"error": part["error"]}
        if "tokens_per_s" in cell.get("hf", {}) and "tokens_per_s" in cell.get("vllm", {}):
            cell["vllm_over_hf"] = round(cell["vllm"]["tokens_per_s"] / cell["hf"]["tokens_per_s"], 2)
        results[spec] = cell
    results["meta"]["load_avg_at_end"] = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
