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
import statistics
from pathlib import Path
from typing import Any

METHODS = ("grpo", "exp_grpo", "grpo_sft_gt_cot")
LABELS = {"grpo": "GRPO", "exp_grpo": "ExP-GRPO", "grpo_sft_gt_cot": "GRPO SFT-GT-CoT"}
VARIANTS = {  # runs beside the comparison, reported apart: name -> (label, what differs)
    "grpo_sft_gt_cot_cap40": ("GRPO SFT-GT-CoT, 40 new tokens", (
        "GRPO SFT-GT-CoT with max_new_tokens 40, the first run: the expert trace it learns to imitate is "
        "28-66 tokens long in the mean per level (up to 78), so from level 3 on its samples were cut off "
        "before the answer")),
}
PRECISION_RUN = "grpo_fp32"  # the GRPO preset for 5 steps in fp32 (vLLM and trainer): the precision check
PER_STEP = ("grpo/zero_signal_fraction", "grpo/accuracy", "grpo/response_len", "grpo/stopped",
            "exp_sft/explain_acceptance_rate", "exp_sft/nll", "sampler/logprob_abs_diff", "sampler/kl",
            "rollout/tokens_per_s", "time/sample_s", "time/update_s", "time/step_s")
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


def run_entry(run: Path, log: Path) -> dict[str, Any]:
    """One run's final table, wall time, learning curves and per-step signals."""
    final = json.loads((run / "eval_final.json").read_text())
    metrics = read_jsonl(run / "metrics.jsonl")
    steps = [r for r in metrics if r["step"] > 0 and "grpo/zero_signal_fraction" in r]
    wall, wall_source = wall_time_s(log, metrics)
    curves = eval_curves(metrics)
    per_step = {key: [r.get(key) for r in steps] for key in PER_STEP}
    acceptance = [v for v in per_step["exp_sft/explain_acceptance_rate"] if v is not None]
    return {
        "by_level": final["by_level"], "n": final["n"], "questions_per_level": final["questions_per_level"],
        "steps": len(steps), "wall_time_s": round(wall, 1), "wall_time_source": wall_source,
        "mean_zero_signal_fraction": _mean(per_step["grpo/zero_signal_fraction"]),
        "mean_explanation_acceptance_rate": _mean(acceptance) if acceptance else None,
        "mean_sampler_logprob_abs_diff": _mean(per_step["sampler/logprob_abs_diff"]),
        "mean_response_len": _mean(per_step["grpo/response_len"]),
        "mean_stopped_fraction": _mean(per_step["grpo/stopped"]),
        "curves": curves, "per_step": {k: v for k, v in per_step.items() if any(x is not None for x in v)},
    }


def eval_curves(metrics: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{step: {"L<level>/pass@k": value}}`` from the log lines that hold held-out evaluations."""
    return {str(r["step"]): {k.removeprefix("eval/"): v for k, v in r.items() if k.startswith("eval/")}
            for r in metrics if any(k.startswith("eval/") for k in r)}


def seed_runs(runs: Path, method: str) -> dict[int, Path]:
    """Finished runs of ``method``: seed 0 in ``RUNS/<method>``, seed s in ``RUNS/<method>_seed<s>``."""
    found = {0: runs / method} if (runs / method / "eval_final.json").is_file() else {}
    for path in sorted(runs.glob(f"{method}_seed*")):
        seed = path.name.removeprefix(f"{method}_seed")
        if seed.isdigit() and (path / "eval_final.json").is_file():
            found[int(seed)] = path
    return found


def method_entry(runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A method over its seeds: ``by_level`` is the mean over seeds, ``by_seed`` each seed's table;
    the scalar summaries are means over seeds; ``runs`` keeps each seed's curves and per-step data."""
    first = runs[min(runs)]
    levels = first["by_level"]
    by_level = {level: {k: _mean([r["by_level"][level][k] for r in runs.values()]) for k in levels[level]}
                for level in levels}
    scalars = ("wall_time_s", "mean_zero_signal_fraction", "mean_explanation_acceptance_rate",
               "mean_sampler_logprob_abs_diff", "mean_response_len", "mean_stopped_fraction")
    return {"by_level": by_level, "seeds": sorted(runs), "steps": first["steps"], "n": first["n"],
            "questions_per_level": first["questions_per_level"],
            "by_seed": {str(s): r["by_level"] for s, r in sorted(runs.items())},
            **{k: _mean([r[k] for r in runs.values()]) for k in scalars},
            "wall_time_source": first["wall_time_source"],
            "runs": {str(s): r for s, r in sorted(runs.items())}}


def _summary(key: str, values: list[Any]) -> float | None:
    """Median of a time or a rate (robust to the warm-up step), mean of a training signal."""
    if key.startswith(("time/", "rollout/")):
        values = [v for v in values if v is not None]
        return statistics.median(values) if values else None
    return _mean(values)


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


def precision_check(runs: Path) -> dict[str, Any] | None:
    """fp32 against the shipped bf16 (vLLM bfloat16 + bf16 autocast) on the GRPO preset: the base
    table (eval_initial), the first steps' signals (mean) and times (median), and the step-n curve
    point; the second bf16 seed's first steps are the seed-to-seed noise to read the gap against."""
    fp32 = runs / PRECISION_RUN
    if not (fp32 / "eval_final.json").is_file():  # finished
        return None
    labels = {"fp32 (seed 0)": fp32, "bf16 (seed 0)": runs / "grpo", "bf16 (seed 1)": runs / "grpo_seed1"}
    metrics = {label: read_jsonl(path / "metrics.jsonl") for label, path in labels.items()
               if (path / "metrics.jsonl").is_file()}
    n = max(r["step"] for r in metrics["fp32 (seed 0)"])
    first_steps = {label: {key: _summary(key, [r.get(key) for r in rows if 0 < r["step"] <= n]) for key in PER_STEP}
                   for label, rows in metrics.items()}
    curve = {label: eval_curves(rows).get(str(n), {}) for label, rows in metrics.items()}
    base = {label: json.loads((labels[label] / "eval_initial.json").read_text())["by_level"]
            for label in metrics if (labels[label] / "eval_initial.json").is_file()}
    return {"steps_compared": n, "first_steps": first_steps,
            "first_steps_how": "times and tokens/s: median over the steps (step 1 holds warm-up); signals: mean",
            f"eval_at_step_{n}": curve, "base": base,
            "command": f".venv-vllm/bin/expo-rl train real_lm/grpo --set train.steps={n} "
                       "--set train.mixed_precision=no --set sampling.vllm_dtype=float32"}


def _cell(entry: dict[str, Any], level: str, k: str) -> str:
    """Mean over seeds, and each seed's value when there is more than one."""
    text = f"{100 * entry['by_level'][level][k]:.1f}"
    if len(entry.get("by_seed", {})) > 1:
        text += " (" + " / ".join(f"{100 * t[level][k]:.1f}" for t in entry["by_seed"].values()) + ")"
    return text


def markdown(report: dict[str, Any]) -> str:
    levels = sorted(report["base"]["by_level"], key=int)
    names = [m for m in METHODS if m in report["methods"]]
    seeds = ", ".join(f"{LABELS[m]} {report['methods'][m]['seeds']}" for m in names)
    lines = ["# ExPO on a real pretrained LM: Gemma 3 270M on the addition task", "",
             f"Model `{report['model']}`, task `{report['task']}`, held-out questions per level "
             f"{report['base']['questions_per_level']}, {report['base']['n']} samples each "
             f"(T = {report['temperature']}). Seeds: {seeds}; with two seeds a cell is the mean "
             "(seed 0 / seed 1).", ""]
    for k in ("pass@1", "pass@8"):
        lines += [f"## Held-out {k} per level (%)", "",
                  "| level | base | " + " | ".join(LABELS[m] for m in names) + " |",
                  "|---|---|" + "---|" * len(names)]
        for level in levels:
            row = [f"{100 * report['base']['by_level'][level][k]:.1f}"]
            row += [_cell(report["methods"][m], level, k) for m in names]
            lines.append(f"| {level} | " + " | ".join(row) + " |")
        lines.append("")
    lines += ["## Runs (means over seeds)", "", "| method | steps | wall time | mean zero-signal fraction | "
              "mean explanation acceptance | mean response tokens | stopped before the cap | mean abs "
              "log-prob diff sampler vs trainer |", "|---|---|---|---|---|---|---|---|"]
    rows = [(LABELS[m], report["methods"][m]) for m in names]
    rows += [(entry["label"], entry) for entry in report.get("variants", {}).values()]
    for label, e in rows:
        acc = e["mean_explanation_acceptance_rate"]
        lines.append(f"| {label} | {e['steps']} | {e['wall_time_s'] / 60:.1f} min | "
                     f"{e['mean_zero_signal_fraction']:.3f} | {'-' if acc is None else f'{acc:.3f}'} | "
                     f"{e['mean_response_len']:.1f} | {e['mean_stopped_fraction']:.2f} | "
                     f"{e['mean_sampler_logprob_abs_diff']:.4f} |")
    for e in report.get("variants", {}).values():
        lines += ["", f"{e['label']}: {e['what']}. Held-out pass@1 / pass@8 per level: "
                  + "; ".join(f"L{lv} {100 * e['by_level'][lv]['pass@1']:.1f} / {100 * e['by_level'][lv]['pass@8']:.1f}"
                              for lv in levels) + "."]
    precision = report.get("precision")
    if precision:
        n = precision["steps_compared"]
        lines += ["", f"## Precision: fp32 against bf16 on the GRPO preset (first {n} steps)", "",
                  f"`{precision['command']}`", "",
                  "| run | accuracy (mean) | zero-signal fraction (mean) | abs log-prob diff sampler vs "
                  "trainer (mean) | rollout tokens/s (median) | sample s (median) | update s (median) | "
                  "step s (median) |", "|---|---|---|---|---|---|---|---|"]
        for label, m in precision["first_steps"].items():
            lines.append(f"| {label} | {m['grpo/accuracy']:.3f} | {m['grpo/zero_signal_fraction']:.3f} | "
                         f"{m['sampler/logprob_abs_diff']:.1e} | {m['rollout/tokens_per_s']:.0f} | "
                         f"{m['time/sample_s']:.1f} | {m['time/update_s']:.1f} | {m['time/step_s']:.1f} |")
        lines += ["", "Base model (before step 1), pass@1 / pass@8 per level (%): " + "; ".join(
            f"{label}: " + ", ".join(f"L{lv} {100 * t[lv]['pass@1']:.1f} / {100 * t[lv]['pass@8']:.1f}"
                                     for lv in levels) for label, t in precision["base"].items()) + "."]
        curve = precision[f"eval_at_step_{n}"]
        lines += ["", f"Curve point at step {n} (pass@1, 8 questions per level, 4 samples): " + "; ".join(
            f"{label}: " + ", ".join(f"L{lv} {100 * c.get(f'L{lv}/pass@1', float('nan')):.1f}" for lv in levels)
            for label, c in curve.items() if c) + "."]
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
        "commands": {m: f".venv-vllm/bin/expo-rl train real_lm/{m} [--set train.seed=S]" for m in METHODS},
    }
    for m in [*METHODS, *VARIANTS]:
        runs = seed_runs(args.runs, m)
        if not runs:
            continue
        entry = method_entry({seed: run_entry(run, args.runs / f"{run.name}.log") for seed, run in runs.items()})
        if m in VARIANTS:
            label, what = VARIANTS[m]
            report.setdefault("variants", {})[m] = {"label": label, "what": what, **entry}
        else:
            report["methods"][m] = entry
        for run in runs.values():
            if (run / "plots").is_dir():
                shutil.copytree(run / "plots", args.out / run.name, dirs_exist_ok=True)
            shutil.copy(run / "metrics.jsonl", args.out / f"{run.name}.metrics.jsonl")
    report["precision"] = precision_check(args.runs)
    if (args.out / "diagnostics.json").is_file():
        report["diagnostics"] = summary_of(json.loads((args.out / "diagnostics.json").read_text()))
    (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "report.md").write_text(markdown(report))
    print((args.out / "report.md").read_text())


if __name__ == "__main__":
    main()
