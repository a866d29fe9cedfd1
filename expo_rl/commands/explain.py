"""``expo-rl explain``: generate self-explanations ``c~ ~ pi(. | q, hint)`` and cache them as JSONL.

Resumable: questions that already have ``--n`` records made with the same settings (model and
its files, dtype, sampling, hint, task, template, answer format, filters; each record's
``policy.cache_key``) in ``--out`` are skipped, records of other settings are not counted, and records are appended after every group of questions, so an interrupted run
continues where it stopped. Each record names the policy version that produced it (model spec,
checkpoint step, parameter hash).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from expo_rl.engine.cache_context import model_fingerprint
from expo_rl.engine.run_dir import command_line, lock_output
from expo_rl.expo.cli_args import (
    COUNT,
    add_explain_args,
    add_model_args,
    add_selection_args,
    explain_config_from_args,
    load_model,
    problems_from_args,
)
from expo_rl.expo.explanations import (
    acceptance_stats,
    append_explanations,
    generate_explanations,
    read_explanations,
)
from expo_rl.sources.cache_key import problem_keys, warn_stale


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="generate and cache self-explanations (ExPO positive samples)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    add_selection_args(parser)
    parser.add_argument("--out", required=True, help="JSONL file to append explanation records to (resumable)")
    parser.add_argument("--n", type=COUNT, default=1, help="explanations per question")
    add_explain_args(parser, temperature=0.9, max_new_tokens=512)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # one writer per output file: a second explain appending to it would interleave records
    with lock_output(Path(args.out).parent, command_line(), lock_file=f"{args.out}.lock"):
        return _run(args)


def settings_context(args: argparse.Namespace) -> dict:
    """What decides an explanation record's content: keys its records (sources.cache_key)."""
    names = ("model", "dtype", "temperature", "top_p", "max_new_tokens", "draw", "hint", "hint_fraction",
             "task", "template", "answer_format", "on_mismatch", "leak_policy")
    return {"command": "explain", "model_files": model_fingerprint(args.model),
            **{name: getattr(args, name, None) for name in names}}


def _run(args: argparse.Namespace) -> int:
    config = explain_config_from_args(args)
    problems = problems_from_args(args)
    keys = problem_keys(settings_context(args), problems)
    records = read_explanations(args.out)
    existing = [e for e in records if e.policy.get("cache_key") == keys.get(e.id)]
    warn_stale(args.out, sum(e.id in keys for e in records) - len(existing), "explanations")
    done = Counter(e.id for e in existing)
    todo = [p for p in problems if done[p.id] < args.n]
    print(f"{len(problems)} questions, {len(problems) - len(todo)} already in {args.out}, {len(todo)} to explain")
    if todo:
        model, tokenizer, version = load_model(args)
        step = max(1, args.questions_per_call)
        with tqdm(total=len(todo), desc="explain", unit="q") as bar:
            for group, start in enumerate(range(0, len(todo), step)):
                chunk = todo[start : start + step]
                rows = generate_explanations(
                    model, tokenizer, chunk, config,
                    n=args.n, seed=args.seed + group, batch_size=args.batch_size, policy=version,
                )
                for row in rows:
                    row.policy["cache_key"] = keys[row.id]
                append_explanations(args.out, rows)
                bar.update(len(chunk))
    wanted = {p.id for p in problems}
    stats = acceptance_stats(e for e in read_explanations(args.out)
                             if e.id in wanted and e.policy.get("cache_key") == keys[e.id])
    print("  ".join(f"{k.removeprefix('explain/')}={v:g}" for k, v in stats.items()))
    return 0
