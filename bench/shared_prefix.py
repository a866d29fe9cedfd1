"""Shared-prompt scoring benchmark (issue 15): forward + backward of ``completion_logprobs`` with
each group's prompt run once (``shared_prefix=True``) vs once per row (today's forward).

    python bench/shared_prefix.py                                  # tiny:qwen2:20m, GRPO-like batch
    python bench/shared_prefix.py --groups 16 --group-size 2       # DPO-like: pairs
    python bench/shared_prefix.py --bf16                           # also: shared, under CPU bf16 autocast

A batch of ``--groups`` random prompts of ``--prompt-tokens`` tokens, each with ``--group-size``
random completions of ``--completion-tokens`` tokens, packed as the trainer packs it (right
padding, length buckets on). The variants (per-row prompts, shared prompts, and with ``--bf16``
shared prompts under ``torch.autocast("cpu", torch.bfloat16)``, what ``train.mixed_precision:
bf16`` runs) run in the same process, in rotating order, after one untimed call each; reports
the median seconds of forward + backward and the ratios to the per-row forward.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from expo_rl.policy import load_policy  # noqa: E402
from expo_rl.policy.logprobs import completion_logprobs, pack_sequences  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny:qwen2:20m", help="model spec (default tiny:qwen2:20m)")
    parser.add_argument("--groups", type=int, default=8, help="distinct prompts (default 8)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (default 8)")
    parser.add_argument("--prompt-tokens", type=int, default=87, help="prompt length (default 87)")
    parser.add_argument("--completion-tokens", type=int, default=72, help="completion length (default 72)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--bf16", action="store_true", help="add shared prompts under bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_policy(args.model)
    model.train()
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    prompts = [torch.randint(3, vocab, (args.prompt_tokens,), generator=gen).tolist() for _ in range(args.groups)]
    rows = [(p, torch.randint(3, vocab, (args.completion_tokens,), generator=gen).tolist())
            for p in prompts for _ in range(args.group_size)]
    ids, attention, completion = pack_sequences([p for p, _ in rows], [c for _, c in rows], pad_id=0)

    def run(variant: str) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=variant == "shared+bf16"):
            logprobs = completion_logprobs(model, ids, attention, completion, length_buckets=True,
                                           shared_prefix=variant != "per-row")
        logprobs.sum().backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    variants = ["per-row", "shared"] + (["shared+bf16"] if args.bf16 else [])
    for variant in variants:
        run(variant)
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for rep in range(args.repeats):
        for variant in variants[rep % len(variants):] + variants[:rep % len(variants)]:
            seconds[variant].append(run(variant))
            print(f"rep {rep} {variant}: {seconds[variant][-1]:.2f} s", flush=True)
    tokens_plain = len(rows) * (args.prompt_tokens + args.completion_tokens)
    tokens_shared = args.groups * args.prompt_tokens + len(rows) * args.completion_tokens
    print(f"{args.model}, {args.groups} prompts x {args.group_size}, {args.prompt_tokens} + {args.completion_tokens} "
          f"tokens (through the body: per-row {tokens_plain}, shared {tokens_shared}, "
          f"{tokens_plain / tokens_shared:.2f}x fewer)")
    base = statistics.median(seconds["per-row"])
    for variant in variants:
        median = statistics.median(seconds[variant])
        print(f"  {variant}: median {median:.2f} s, speed-up {base / median:.2f}x")


if __name__ == "__main__":
    main()
