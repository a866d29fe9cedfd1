"""The real-LM experiment's report (issue 13): ``report.json`` + ``report.md`` from the runs.

The runs are ``expo-rl train real_lm/<method>`` (README "ExPO on a real pretrained LM"); this
script only reads what they wrote (``eval_initial.json``, ``eval_final.json``, ``metrics.jsonl``,
the plots, the ``/usr/bin/time -v`` log beside each run when there is one) and, with
``--diagnose``, measures the ExPO diagnostics of the base model on the task (SPEC 3.3: per-token
NLL of self-explanations c~, own samples and expert solutions c_E under the plain prompt, and the
answer reachability pi(a* | q, c); ``expo_rl.demo.diagnostics``).

    .venv/bin/python scripts/real_lm_report.py --runs RUNS_DIR --out docs/results/real_lm [--diagnose]

``RUNS_DIR/<method>`` is each run's ``train.output_dir``; ``RUNS_DIR/<method>.log`` its log.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

METHODS = ("grpo", "exp_grpo", "grpo_sft_gt_cot")
LABELS = {"grpo": "GRPO", "exp_grpo": "ExP-GRPO", "grpo_sft_gt_cot": "GRPO SFT-GT-CoT"}
PRESET = "real_lm/exp_grpo"  # the task, model, sampling and held-out set every method shares


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wall_time_s(log: Path, metrics: list[dict[str, Any]]) -> tuple[float, str]:
    """The run's wall time from its ``/usr/bin/time -v`` log, else the sum of its step times."""
    if log.is_file():
        match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log.read_text())
        if match:
            parts = [float(p) for p in match.group(1).split(":")]
            seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
            return seconds, "/usr/bin/time -v (process start to exit, model load and evaluations included)"
    return sum(r.get("time/step_s", 0.0) for r in metrics), "sum of time/step_s (training steps only)"


def method_entry(run: Path, log: Path) -> dict[str, Any]:
    final = json.loads((run / "eval_final.json").read_text())
    metrics = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in metrics if r["step"] > 0 and "grpo/zero_signal_fraction" in r]
    wall, wall_source = wall_time_s(log, metrics)
    curves = {str(r["step"]): {k.removeprefix("eval/"): v for k, v in r.items() if k.startswith("eval/")}
              for r in metrics if any(k.startswith("eval/") for k in r)}
    per_step = {key: [r.get(key) for r in steps] for key in (
        "grpo/zero_signal_fraction", "grpo/accuracy", "exp_sft/explain_acceptance_rate", "exp_sft/nll",
        "sampler/logprob_abs_diff", "sampler/kl", "time/step_s")}
    acceptance = [v for v in per_step["exp_sft/explain_acceptance_rate"] if v is not None]
    return {
        "by_level": final["by_level"], "n": final["n"], "questions_per_level": final["questions_per_level"],
        "seeds": [0], "steps": len(steps), "wall_time_s": round(wall, 1), "wall_time_source": wall_source,
        "mean_zero_signal_fraction": _mean(per_step["grpo/zero_signal_fraction"]),
        "mean_explanation_acceptance_rate": _mean(acceptance) if acceptance else None,
        "mean_sampler_logprob_abs_diff": _mean(per_step["sampler/logprob_abs_diff"]),
        "curves": curves, "per_step": {k: v for k, v in per_step.items() if any(x is not None for x in v)},
    }


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def diagnostics(levels: list[int], questions: int) -> dict[str, Any]:
    """ExPO diagnostics of the base model on the first ``questions`` held-out questions of each level."""
    from expo_rl.demo.diagnostics import diagnose
    from expo_rl.engine.config import load_config
    from expo_rl.engine.recipe import load_problem_set
    from expo_rl.policy import load_policy, stop_token_ids

    config = load_config(PRESET)
    problem_set = load_problem_set(config)
    model, tokenizer = load_policy(config.model.policy)
    stops = tuple(stop_token_ids(tokenizer, config.sampling.stop))
    out: dict[str, Any] = {}
    for level in levels:
        result = diagnose(model, tokenizer, problem_set.task, problem_set.held_out[level][:questions],
                          temperature=config.sampling.temperature, seed=config.train.seed, tries=4,
                          stop_ids=stops)
        out[str(level)] = result
    return out


def summary_of(diag: dict[str, Any]) -> dict[str, Any]:
    """The diagnostics without the per-sample lists."""
    return {level: {key: ({k: v for k, v in value.items() if k not in ("nll", "reachability")}
                          if isinstance(value, dict) else value) for key, value in result.items()}
            for level, result in diag.items()}


def markdown(report: dict[str, Any]) -> str:
    levels = sorted(report["base"]["by_level"], key=int)
    names = [m for m in METHODS if m in report["methods"]]
    lines = ["# ExPO on a real pretrained LM: Gemma 3 270M on the addition task", "",
             f"Model `{report['model']}`, task `{report['task']}`, held-out questions per level "
             f"{report['base']['questions_per_level']}, {report['base']['n']} samples each "
             f"(T = {report['temperature']}). Seed 0, one run per method.", ""]
    for k in ("pass@1", "pass@8"):
        lines += [f"## Held-out {k} per level (%)", "",
                  "| level | base | " + " | ".join(LABELS[m] for m in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for level in levels:
            row = [f"{100 * report['base']['by_level'][level][k]:.1f}"]
            row += [f"{100 * report['methods'][m]['by_level'][level][k]:.1f}" for m in names]
            lines.append(f"| {level} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Runs", "", "| method | steps | wall time | mean zero-signal fraction | mean explanation "
              "acceptance | mean abs log-prob diff sampler vs trainer |", "|---|---|---|---|---|---|"]
    for m in names:
        e = report["methods"][m]
        acc = e["mean_explanation_acceptance_rate"]
        lines.append(f"| {LABELS[m]} | {e['steps']} | {e['wall_time_s'] / 60:.1f} min | "
                     f"{e['mean_zero_signal_fraction']:.3f} | {'-' if acc is None else f'{acc:.3f}'} | "
                     f"{e['mean_sampler_logprob_abs_diff']:.4f} |")
    if report.get("diagnostics"):
        lines += ["", "## ExPO diagnostics of the base model (SPEC 3.3; scored under the plain prompt)", "",
                  "| level | kind | n | mean per-token NLL | mean reachability pi(a* given q, c) |",
                  "|---|---|---|---|---|"]
        for level, result in report["diagnostics"].items():
            for kind in ("self_explanation", "own", "expert"):
                d = result[kind]
                nll = "-" if d["mean_nll"] is None else f"{d['mean_nll']:.3f}"
                reach = "-" if d["mean_reachability"] is None else f"{d['mean_reachability']:.3f}"
                lines.append(f"| {level} | {kind} | {d['n']} | {nll} | {reach} |")
            lines.append(f"| {level} | hinted samples with the right answer | "
                         f"{result['questions']} questions | {result['hinted_correct']:.3f} | |")
    lines += ["", "Commands: see `commands` in report.json and the README section.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--diagnose", action="store_true", help="measure the base model's ExPO diagnostics")
    parser.add_argument("--diagnose-levels", default="3,4,5")
    parser.add_argument("--diagnose-questions", type=int, default=16)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from expo_rl.engine.config import load_config

    config = load_config(PRESET)
    if args.diagnose:  # first: it needs no run
        diag = diagnostics([int(x) for x in args.diagnose_levels.split(",")], args.diagnose_questions)
        (args.out / "diagnostics.json").write_text(json.dumps(diag, indent=1) + "\n")
    if not (args.runs / "grpo" / "eval_initial.json").is_file():
        raise SystemExit(f"{args.runs / 'grpo' / 'eval_initial.json'}: no base table yet (the GRPO run writes it)")
    initial = json.loads((args.runs / "grpo" / "eval_initial.json").read_text())
    report: dict[str, Any] = {
        "model": config.model.policy, "task": config.data.task, "temperature": config.sampling.temperature,
        "base": {"by_level": initial["by_level"], "n": initial["n"],
                 "questions_per_level": initial["questions_per_level"],
                 "source": "eval_initial.json of the GRPO run (the same base model and held-out set for all)"},
        "methods": {},
        "commands": {m: f".venv-vllm/bin/expo-rl train real_lm/{m}" for m in METHODS},
    }
    for m in METHODS:
        run = args.runs / m
        if (run / "eval_final.json").is_file():
            report["methods"][m] = method_entry(run, args.runs / f"{m}.log")
            plots = args.out / m
            if (run / "plots").is_dir():
                shutil.copytree(run / "plots", plots, dirs_exist_ok=True)
            shutil.copy(run / "metrics.jsonl", args.out / f"{m}.metrics.jsonl")
    if (args.out / "diagnostics.json").is_file():
        report["diagnostics"] = summary_of(json.loads((args.out / "diagnostics.json").read_text()))
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
