"""Sampler benchmark (issue 15): the hf engine's decode loop with each KV cache and token draw.

    python bench/sampler.py                                   # tiny:qwen2:20m and gemma3-270m, 64 x 4 x 128
    python bench/sampler.py --models gemma3-270m --prompts 16 --repeats 2 \
        --variants dynamic/multinomial shared/inverse_cdf shared/inverse_cdf/bf16

Each variant is ``kv_cache/draw[/bf16]`` (``kv_cache``: shared, block or dynamic, see
``expo_rl.policy.sampling._decode_compact``; ``/bf16``: under ``torch.autocast("cpu",
torch.bfloat16)``, what ``train.mixed_precision: bf16`` samples with: other numerics, so not the
fp32 model's distribution); all run in the same process, on the same prompts and seeds, in
rotating order (so that load on a shared machine hits every variant alike), after one untimed
warm-up call each. Each call is ``_decode_compact`` (the compact engine's loop: one prefill per
distinct prompt, ``--samples`` rows per prompt, finished rows dropped) at temperature 1, top-p 1,
fp32, ``--threads`` torch threads. Reports the median seconds per call, the tokens generated,
and each variant's speed-up over the first (default: the sampler as it was before issue 15,
DynamicCache and multinomial); with ``--json`` the numbers are also written to
``bench/results/sampler.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from expo_rl.policy import encode_prompt, load_policy  # noqa: E402
from expo_rl.policy.sampling import _decode_compact, eos_token_ids, pad_token_id  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from rollout import prompts_for  # noqa: E402


def decode(model, rows, samples, new_tokens, eos_ids, pad_id, variant, seed):
    kv_cache, draw, *precision = variant.split("/")
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16) if precision == ["bf16"] else nullcontext():
        return _decode_compact(model, rows, [samples] * len(rows), temperature=1.0, top_p=1.0,
                               max_new_tokens=new_tokens, eos_ids=eos_ids, pad_id=pad_id, kv_cache=kv_cache,
                               draw=draw)


def bench_model(spec: str, args: argparse.Namespace) -> dict:
    model, tokenizer = load_policy(spec)
    model.eval()
    eos_ids = eos_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer, eos_ids)
    if args.prompt_tokens:  # random token ids (3 .. vocab-1) of that length: long prompts on demand
        ids = torch.Generator().manual_seed(0)
        rows = [torch.randint(3, model.config.vocab_size, (args.prompt_tokens,), generator=ids).tolist()
                for _ in range(args.prompts)]
    else:
        rows = [encode_prompt(tokenizer, p) for p in prompts_for(tokenizer, args.prompts)]
    variants = args.variants
    for variant in variants:  # warm-up
        decode(model, rows[:2], 2, 4, eos_ids, pad_id, variant, 0)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    tokens: dict[str, list[int]] = {v: [] for v in variants}
    for rep in range(args.repeats):
        for variant in variants[rep % len(variants):] + variants[:rep % len(variants)]:
            started = time.perf_counter()
            out = decode(model, rows, args.samples, args.new_tokens, eos_ids, pad_id, variant, seed=rep)
            seconds[variant].append(time.perf_counter() - started)
            tokens[variant].append(sum(len(t) for t in out))
            print(f"{spec} rep {rep} {variant}: {tokens[variant][-1]} tokens in {seconds[variant][-1]:.2f} s",
                  flush=True)
    result = {v: {"median_s": round(statistics.median(seconds[v]), 3), "seconds": [round(s, 3) for s in seconds[v]],
                  "tokens": tokens[v]} for v in variants}
    for variant in variants:
        result[variant]["speedup"] = round(result[variants[0]]["median_s"] / result[variant]["median_s"], 2)
        print(f"{spec} {variant}: median {result[variant]['median_s']:.2f} s, "
              f"speed-up {result[variant]['speedup']:.2f}x", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["tiny:qwen2:20m", "gemma3-270m"],
                        help="model specs for load_policy (default: tiny:qwen2:20m gemma3-270m)")
    parser.add_argument("--prompts", type=int, default=64, help="distinct prompts (default 64)")
    parser.add_argument("--samples", type=int, default=4, help="samples per prompt (default 4)")
    parser.add_argument("--prompt-tokens", type=int, default=0,
                        help="random prompts of this many tokens instead of the math questions (default: questions)")
    parser.add_argument("--new-tokens", type=int, default=128, help="max new tokens (default 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant, rotating (default 3)")
    parser.add_argument("--variants", nargs="+",
                        default=["dynamic/multinomial", "block/multinomial", "shared/multinomial", "shared/inverse_cdf"],
                        help="kv_cache/draw[/bf16]; speed-ups are over the first (default: dynamic/multinomial "
                             "block/multinomial shared/multinomial shared/inverse_cdf)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", action="store_true", help="also write (merge by model into) bench/results/sampler.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {spec: bench_model(spec, args) for spec in args.models}
    if args.json:
        meta = {"command": " ".join(sys.argv), "threads": args.threads, "torch": torch.__version__,
                "load_average": os.getloadavg(), "machine": platform.processor() or platform.machine()}
        out = ROOT / "bench" / "results" / "sampler.json"
        kept = json.loads(out.read_text()) if out.exists() else {}  # models not re-run keep their entries
        merged = {spec: entry for spec, entry in kept.items() if spec not in results and "results" in entry}
        merged.update({spec: {"meta": meta, "results": result} for spec, result in results.items()})
        out.write_text(json.dumps(merged, indent=2) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
