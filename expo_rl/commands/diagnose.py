"""``expo-rl diagnose``: ExPO's Figure 2 and Lemma 2 measured on your model and data.

Per question: ``--n`` self-explanations (answer given), ``--n`` own samples (plain prompt) and
the expert solution, all scored under the PLAIN prompt: per-token NLL of the chain of thought,
and the answer reachability ``pi(a* | q, c)`` (probability of the answer tokens in the task's
answer format after the chain of thought). Writes

  DIR/records.jsonl   one line per question (texts and per-sample numbers; appended as it goes,
                      so a rerun with the same DIR resumes, and a rerun with another --data adds)
  DIR/diagnose.json   nll_per_token / reachability / log_reachability: {self_explanation,
                      own_sample, expert} -> {mean, std, n}; by_group (gsm8k, math/L1, ...);
                      lemma2 paired comparison; config; per-question records (numbers only)
  DIR/nll_per_token.png, DIR/log_reachability.png   histograms

Example (the README's reproduction; 8 questions x (4 + 4) samples = 64 rows per decode step, and
the inverse-CDF draw, keep a CPU busy with matmuls rather than per-step overhead):
  expo-rl diagnose --model gemma3-270m --data math_train --levels 1-3 --limit 100 \\
      --shuffle-seed 0 --n 4 --max-new-tokens 256 --batch-size 64 --questions-per-call 8 \\
      --draw inverse_cdf --out runs/diagnose_gemma_math
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from expo_rl.data.appendlog import append_records
from expo_rl.data.jsonl import read_json_lines
from expo_rl.engine.run_dir import command_line, lock_output
from expo_rl.errors import UserError
from expo_rl.expo.cli_args import (
    COUNT,
    add_explain_args,
    add_model_args,
    add_selection_args,
    explain_config_from_args,
    load_model,
    problems_from_args,
)
from expo_rl.expo.diagnostics import (
    DiagnoseConfig,
    diagnose_batch,
    format_table,
    plot_histograms,
    summarize,
    summarize_by_group,
)

# Settings that must match for records of one DIR to be summarised together. ``--draw`` is not
# one: both draws sample the same distribution; each record names its own (absent = multinomial).
_GENERATION_KEYS = (
    "model", "n", "temperature", "top_p", "max_new_tokens", "hint", "hint_fraction", "task",
    "template", "answer_format", "instruction", "leak_policy", "on_mismatch",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "diagnose",
        help="measure NLL and answer reachability of self-explanations vs own samples vs expert solutions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    add_selection_args(parser)
    parser.add_argument("--out", required=True, help="output directory (created; reused to resume)")
    parser.add_argument("--n", type=COUNT, default=4, help="self-explanations and own samples per question")
    parser.add_argument("--instruction", default=None,
                        help="instruction of the plain prompt (default: the policy layer's default)")
    parser.add_argument("--score-batch-size", type=COUNT, default=4, help="sequences per scoring forward pass")
    parser.add_argument("--max-score-tokens", type=COUNT, default=2048,
                        help="cap on prompt + text tokens when scoring (longer expert solutions are cut)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG histograms")
    add_explain_args(parser, temperature=1.0, max_new_tokens=384)
    parser.set_defaults(run=run)


def _read_records(path: Path) -> list[dict]:
    # a run killed mid-write leaves a partial last line: drop it, it is redone
    return [record for _, record in read_json_lines(path, missing_ok=True, bad="warn")]


def _check_settings(out: Path, settings: dict) -> None:
    path = out / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        different = {k: (previous.get(k), settings.get(k)) for k in _GENERATION_KEYS if previous.get(k) != settings.get(k)}
        if different:
            raise UserError(f"{path} was written with other settings {different} (old, new); use another --out")
    else:
        path.write_text(json.dumps(settings, indent=2))


def run(args: argparse.Namespace) -> int:
    with lock_output(args.out, command_line()):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    explain = explain_config_from_args(args)
    config = DiagnoseConfig(
        n=args.n, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, draw=args.draw,
        instruction=args.instruction, batch_size=args.batch_size, score_batch_size=args.score_batch_size,
        max_score_tokens=args.max_score_tokens,
    )
    settings = {key: getattr(args, key, None) for key in _GENERATION_KEYS}
    _check_settings(out, settings)
    records_path = out / "records.jsonl"
    done = {r["id"] for r in _read_records(records_path)}
    problems = problems_from_args(args)
    todo = [p for p in problems if p.id not in done]
    print(f"{len(problems)} questions, {len(problems) - len(todo)} already in {records_path}, {len(todo)} to diagnose")
    if todo:
        model, tokenizer, version = load_model(args)
        step = max(1, args.questions_per_call)
        with tqdm(total=len(todo), desc="diagnose", unit="q") as bar:
            for start in range(0, len(todo), step):
                chunk = todo[start : start + step]
                # the seed depends on the question's position in the selection, so a resumed run
                # samples what the uninterrupted run would have
                seed = args.seed + problems.index(chunk[0])
                records = diagnose_batch(model, tokenizer, chunk, config, explain, seed=seed)
                for record in records:
                    record["policy"] = version
                    record["draw"] = args.draw
                append_records(records_path, records, ensure_ascii=False)  # a torn tail is cut first
                bar.update(len(chunk))
    records = _read_records(records_path)
    summary = summarize(records)
    report = {
        **summary,
        "by_group": summarize_by_group(records),
        "config": {**settings, **asdict(config), "data": args.data, "levels": args.levels,
                   "limit": args.limit, "shuffle_seed": args.shuffle_seed},
        "command": "expo-rl " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d"),
        "records": [_numbers_only(r) for r in records],
    }
    (out / "diagnose.json").write_text(json.dumps(report, indent=2))
    print(format_table(summary))
    for name, group in report["by_group"].items():
        print(f"\n[{name}]\n{format_table(group)}")
    if not args.no_plots:
        plot_histograms(records, out)
    print(f"\nwrote {out / 'diagnose.json'}")
    return 0


def _numbers_only(record: dict) -> dict:
    """A per-question record without the generated texts (those stay in records.jsonl)."""
    slim = {k: v for k, v in record.items() if not isinstance(v, list) and k != "policy"}
    for key, samples in record.items():
        if isinstance(samples, list):
            slim[key] = [{k: v for k, v in s.items() if k != "text"} for s in samples]
    return slim
