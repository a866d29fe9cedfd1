"""``report.json`` and ``report.md`` of ``expo-rl demo`` (tables shaped like the paper's Tables
2 and 3, the ``expo-rl train`` command of every row, embedded figures, and what the run does and
does not show).

Every sentence that characterises a result is chosen from this run's measured numbers, and every
sentence about the task comes from the task plugin (``DemoTask.description``,
``DemoTask.hard_level_skill``): the report of a user task never repeats facts of the built-in one.
The paper's mechanism ("on the hardest level the base model almost never samples a right answer,
so GRPO has no signal there") is stated only when the base model's pass@8 on that level is below
``HARD_LEVEL_PASS8``; otherwise the report says the hardest level was not hard for this model.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from expo_rl.demo import plots
from expo_rl.demo.jobs import RunResult
from expo_rl.demo.methods import Method
from expo_rl.tasks import DemoTask

HARD_LEVEL_PASS8 = 0.10  # below this base-model pass@8, the hardest level counts as "hard"


def summarise(per_seed: dict[int, list[dict[str, float]]]) -> dict[str, Any]:
    """``{level: {"pass@k": mean, ..., "per_seed": {"pass@k": [...]}}}`` (levels as strings)."""
    out: dict[str, Any] = {}
    for level, values in sorted(per_seed.items()):
        keys = list(values[0])
        entry: dict[str, Any] = {k: statistics.fmean(v[k] for v in values) for k in keys}
        entry["per_seed"] = {k: [v[k] for v in values] for k in keys}
        out[str(level)] = entry
    return out


def write_report(out_dir: Path, task: DemoTask, methods: list[Method],
                 results: dict[str, dict[int, list[dict[str, float]]]],
                 runs: dict[str, list[RunResult]], diagnostics: dict[str, Any],
                 context: dict[str, Any]) -> dict[str, Any]:
    labels = {"base": "base model", **{m.name: m.label for m in methods}}
    levels = tuple(sorted(task.levels))
    figures = make_figures(out_dir, methods, runs, diagnostics, labels, levels)
    report = {
        **context,
        "task_description": task.description,
        "task_hard_level_skill": task.hard_level_skill,
        "methods": {name: {"label": labels[name], "by_level": summarise(per_seed)}
                    for name, per_seed in results.items()},
        "runs": {m.name: {"preset": m.preset, "commands": [r.spec.command for r in runs[m.name]],
                          "settings": _settings(runs[m.name][0])}
                 for m in methods},
        "training": {name: training_summary(recs) for name, recs in runs.items()},
        "diagnostics": {k: ({kk: vv for kk, vv in v.items() if kk not in ("nll", "reachability")}
                            if isinstance(v, dict) else v) for k, v in diagnostics.items()},
        "figures": figures,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "report.md").write_text(markdown(report, methods, levels))
    return report


def _settings(run: RunResult) -> dict[str, Any]:
    """The training settings a reader needs to judge a row (from the run's resolved config)."""
    c = run.spec.config()
    term = c.terms[0]
    return {"steps": c.train.steps, "lr": c.optim.lr, "schedule": c.optim.schedule,
            "warmup_ratio": c.optim.warmup_ratio, "temperature": c.sampling.temperature,
            "questions_per_step": term.source_args.get("questions_per_step"),
            "group_size": term.source_args.get("group_size"),
            "beta": term.coefficient_args.get("beta"),
            "lambda": c.terms[1].weight if len(c.terms) > 1 else None}


def training_summary(runs: list[RunResult]) -> dict[str, Any]:
    def mean_of(key: str) -> float | None:
        values = [v for r in runs for v in r.series(key)]
        return statistics.fmean(values) if values else None

    def positives_per_question(run: RunResult) -> list[float]:
        rows, groups = run.series("exp_sft/rows"), run.series("grpo/groups")
        return [r / g for r, g in zip(rows, groups) if g] if len(rows) == len(groups) else []

    positives = [v for r in runs for v in positives_per_question(r)]
    term = "dpo" if any(r.series("dpo/loss") for r in runs) else "exp_sft"
    return {
        "seconds_per_seed": [round(r.seconds, 1) for r in runs],
        "zero_signal_fraction_mean": mean_of("grpo/zero_signal_fraction"),
        "all_wrong_fraction_mean": mean_of("grpo/all_wrong_fraction"),
        "positives_per_question_mean": statistics.fmean(positives) if positives else None,
        "curve": [r.curve for r in runs],
        "explanation_acceptance": [
            [{"step": row["step"], "rate": row[f"{term}/explain_acceptance_rate"]}
             for row in r.steps if f"{term}/explain_acceptance_rate" in row] for r in runs],
        "final_dpo_loss": [r.series("dpo/loss")[-1] if r.series("dpo/loss") else None for r in runs],
    }


def make_figures(out_dir: Path, methods: list[Method], records: dict[str, list[RunResult]],
                 diagnostics: dict[str, Any], labels: dict[str, str], levels: tuple[int, ...]) -> dict[str, str]:
    figures: dict[str, str] = {}
    for method in methods:
        if records.get(method.name):
            name = f"curves_{method.name}.png"
            plots.learning_curves(records[method.name], method.label, levels, out_dir / name)
            figures[f"curves_{method.name}"] = name
    grpo = {m.name: records[m.name] for m in methods if m.family == "grpo" and records.get(m.name)}
    if grpo:
        plots.zero_signal(grpo, labels, out_dir / "zero_signal.png")
        figures["zero_signal"] = "zero_signal.png"
    plots.histograms(diagnostics, "nll", "per-token NLL under the plain prompt", out_dir / "diagnostics_nll.png")
    figures["diagnostics_nll"] = "diagnostics_nll.png"
    plots.histograms(diagnostics, "reachability", "answer reachability pi(a* | q, c)",
                     out_dir / "diagnostics_reachability.png")
    figures["diagnostics_reachability"] = "diagnostics_reachability.png"
    dpo = {m.name: records[m.name] for m in methods if m.family == "dpo" and records.get(m.name)}
    if dpo:
        plots.dpo_loss_vs_accuracy(dpo, labels, f"L{max(levels)}", out_dir / "figure6_dpo.png")
        figures["figure6_dpo"] = "figure6_dpo.png"
    return figures


def _cell(entry: dict[str, Any], key: str) -> str:
    values = entry["per_seed"][key]
    if len(values) > 1:
        return f"{100 * entry[key]:.1f} ± {100 * statistics.stdev(values):.1f}"
    return f"{100 * entry[key]:.1f}"


def level_table(report: dict[str, Any], names: list[str], key: str, levels: tuple[int, ...]) -> str:
    lines = ["| method | " + " | ".join(f"L{lv}" for lv in levels) + " |",
             "| --- | " + " | ".join("---" for _ in levels) + " |"]
    for name in names:
        entry = report["methods"].get(name)
        if entry is None:
            continue
        cells = [_cell(entry["by_level"][str(lv)], key) for lv in levels]
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _machine(machine: dict[str, Any]) -> str:
    """CPUs, threads, torch, platform and the load average (1/5/15 min) at start and end."""
    def load(values: list[float] | None) -> str:
        return "n/a" if not values else " / ".join(f"{v:.2f}" for v in values)
    workers = machine.get("workers", 1)
    processes = (f"{workers} worker processes x {machine.get('threads_per_worker')} torch thread(s)"
                 if workers > 1 else f"{machine.get('torch_threads')} torch thread(s)")
    return (f"{machine['cpu_count']} CPUs, {processes}, torch "
            f"{machine['torch']} ({machine['platform']}); load average (1/5/15 min) at start "
            f"{load(machine.get('load_average_at_start'))}, at end {load(machine.get('load_average_at_end'))}")


def _gap(report: dict[str, Any], a: str, b: str, level: int, key: str) -> float | None:
    methods = report["methods"]
    if a not in methods or b not in methods:
        return None
    return methods[a]["by_level"][str(level)][key] - methods[b]["by_level"][str(level)][key]


def _settings_line(report: dict[str, Any], methods: list[Method]) -> str:
    """Training settings per family, read from the runs' resolved configs."""
    parts = []
    for family, what in (("grpo", "GRPO family"), ("dpo", "DPO")):
        names = [m.name for m in methods if m.family == family]
        if not names:
            continue
        s = report["runs"][names[0]]["settings"]
        line = (f"{what}: {s['steps']} steps of {s['questions_per_step']} questions, lr {s['lr']} "
                f"({s['schedule']}, warm-up {s['warmup_ratio']}), beta {s['beta']}")
        if family == "grpo":
            line += f", G = {s['group_size']}, lambda {report['runs'].get('exp_grpo', {}).get('settings', s)['lambda']}"
        parts.append(line)
    return "; ".join(parts) + "."


def runs_section(report: dict[str, Any], methods: list[Method]) -> list[str]:
    """Every row's preset and the ``expo-rl train`` command that reproduces it (first seed)."""
    out = ["## Reproduce a row", "",
           "Each row is one `expo-rl train` run of a shipped preset; this is the command of the first seed "
           "(`report.json` -> `runs` has every seed's). Its `eval_final.json` holds the row's numbers.", "",
           "| method | preset | command |", "| --- | --- | --- |"]
    for m in methods:
        entry = report["runs"][m.name]
        out.append(f"| {m.label} | `{entry['preset']}` | `{entry['commands'][0]}` |")
    return out + [""]


def markdown(report: dict[str, Any], methods: list[Method], levels: tuple[int, ...]) -> str:
    hard = max(levels)
    grpo_names = [m.name for m in methods if m.family == "grpo"][::-1] + ["base"]
    dpo_names = [m.name for m in methods if m.family == "dpo"]
    seeds = report["seeds"]
    figs = report["figures"]
    ev = report["eval"]
    out = [
        f"# expo-rl demo: ExPO on the `{report['task']}` task",
        "",
        f"Command: `{report['command']}`  ",
        f"Seeds: {seeds} · budget `{report['budget']}` · wall time {report['wall_seconds']:.0f} s · "
        f"machine: {_machine(report['machine'])}",
        "",
        f"Held-out: {ev['per_level']} questions per level, {ev['samples']} samples each at temperature "
        f"{ev['temperature']}; pass@k with the unbiased estimator, mean over seeds (± standard deviation "
        f"over seeds when there are several). {_settings_line(report, methods)}",
        "",
        "## Table 3 shape: pass@8 (%) per level",
        "",
        level_table(report, grpo_names, "pass@8", levels),
        "",
        "pass@1 (%):",
        "",
        level_table(report, grpo_names, "pass@1", levels),
        "",
    ]
    gap = _gap(report, "exp_grpo", "grpo", hard, "pass@8")
    if gap is not None:
        out += [f"Level-{hard} pass@8, ExP-GRPO minus GRPO: **{100 * gap:+.1f} points** (measured, this run).", ""]
    if dpo_names:
        out += ["## Table 2 shape: DPO with self-explanations (c~) vs expert solutions (c_E) as chosen",
                "", level_table(report, dpo_names + ["base"], "pass@8", levels), "",
                dpo_summary(report), ""]
    out += runs_section(report, methods)
    out += training_section(report, methods, figs)
    out += diagnostics_section(report, figs)
    out += ["## What this run shows, and what it does not", "",
            task_sentence(report),
            mechanism_sentence(report, hard),
            outcome_sentence(gap, hard, report.get("task_hard_level_skill", "")),
            expert_sentence(report, levels),
            f"- Levels {levels[0]}-{levels[-2]} are reported so that forgetting is visible; training mixes "
            "all levels." if len(levels) > 1 else "",
            ""]
    return "\n".join(out)


def base_hard_pass8(report: dict[str, Any], hard: int) -> float | None:
    base = report["methods"].get("base")
    return None if base is None else base["by_level"][str(hard)]["pass@8"]


def task_sentence(report: dict[str, Any]) -> str:
    """What the task is: the task plugin's own description, or nothing beyond its name."""
    description = (report.get("task_description") or "").strip()
    what = f"the `{report['task']}` task ({description})" if description else f"the `{report['task']}` task"
    return (f"- It is a small experiment on {what} with a tiny model trained for minutes; numbers vary with "
            "seeds (see ± columns). It does not show that ExPO improves mathematical reasoning.")


def mechanism_sentence(report: dict[str, Any], hard: int) -> str:
    """The paper's hard-question mechanism, claimed only where the base model's measured level-``hard``
    pass@8 is below ``HARD_LEVEL_PASS8``; the zero-signal fraction quoted as measured."""
    base = base_hard_pass8(report, hard)
    zero = report["training"].get("grpo", {}).get("zero_signal_fraction_mean")
    zero_text = "" if zero is None else f" ({100 * zero:.0f}% of GRPO's groups had no signal, mean over steps)"
    if base is None:
        return "- The base model was not evaluated in this run, so nothing is claimed about the hardest level."
    if base < HARD_LEVEL_PASS8:
        coverage = report["diagnostics"].get("explanation_coverage")
        if coverage:
            explains = (f", while given the answer it explains it in its own style for {100 * coverage:.0f}% of "
                        f"the diagnostic questions (diagnostics above). ExPO trains on those "
                        "self-explanations.")
        else:
            explains = (", and given the answer it produced no accepted self-explanation for the diagnostic "
                        "questions either, so ExP-GRPO has little to train on there.")
        return (f"- It sets up the paper's setting: on level {hard} the base model rarely samples a right "
                f"answer (pass@8 {100 * base:.1f}%), so most groups of G <= 8 samples there have the same "
                f"reward for all their samples (a group holds a right one with probability at most pass@8)"
                f"{zero_text}" + explains)
    return (f"- Level {hard} was NOT hard for this base model (pass@8 {100 * base:.1f}% >= "
            f"{100 * HARD_LEVEL_PASS8:.0f}%): GRPO has a learning signal there too{zero_text}, so this comparison "
            "says little about ExPO's mechanism (learning where the model never samples a right answer).")


def outcome_sentence(gap: float | None, hard: int, skill: str = "") -> str:
    """What the measured level-``hard`` gap says, without claiming more than was measured."""
    if gap is None:
        return f"- No ExP-GRPO vs GRPO comparison at level {hard} in this run."
    if gap >= 0.1:
        return (f"- In this run ExP-GRPO's level-{hard} pass@8 is {100 * gap:+.1f} points from GRPO's "
                "(same budget, same questions).")
    need = f"what the hard level needs (here {skill})" if skill else "what the hard level needs"
    return (f"- In this run the self-explanations did NOT become held-out accuracy: level-{hard} pass@8 of "
            f"ExP-GRPO is {100 * gap:+.1f} points from GRPO's. A positive signal on training questions is "
            f"not enough when the budget is too small for the model to learn {need}; more steps, a smaller "
            "hard level or a larger model are the levers.")


def expert_sentence(report: dict[str, Any], levels: tuple[int, ...]) -> str:
    """How SFT on expert solutions (SFT-GT-CoT) compares with ExP-GRPO, as measured: on the
    hardest level, and on the other levels (where replacing the model's own style shows)."""
    methods = report["methods"]
    style = style_clause(report.get("diagnostics", {}))
    if "grpo_sft_gt_cot" not in methods or "exp_grpo" not in methods:
        return f"- Expert solutions: {style}."
    hard, others = max(levels), [lv for lv in levels if lv != max(levels)]

    def value(name: str, level: int, key: str) -> float:
        return methods[name]["by_level"][str(level)][key]

    def others_pass1(name: str) -> float:
        return statistics.fmean(value(name, lv, "pass@1") for lv in others)

    expert, explained = value("grpo_sft_gt_cot", hard, "pass@8"), value("exp_grpo", hard, "pass@8")
    line = (f"- Expert solutions: {style}. SFT on them (GRPO SFT-GT-CoT) vs ExP-GRPO, measured: level-{hard} pass@8 "
            f"{100 * expert:.1f} vs {100 * explained:.1f}; mean pass@1 over levels "
            f"{others[0]}-{others[-1]} {100 * others_pass1('grpo_sft_gt_cot'):.1f} vs "
            f"{100 * others_pass1('exp_grpo'):.1f} (base model {100 * others_pass1('base'):.1f}).")
    if expert > explained:
        line += (f" On level {hard} alone SFT-GT-CoT scores higher: the paper's finding that ExP-GRPO beats "
                 f"it on hard questions is not reproduced here")
        lost = others_pass1("base") - others_pass1("grpo_sft_gt_cot")
        line += (f", although it costs SFT-GT-CoT {100 * lost:.1f} points of pass@1 on the other levels."
                 if lost > 0.1 else ".")
    return line


def style_clause(diagnostics: dict[str, Any]) -> str:
    """How far the expert solutions are from the model's own distribution, as the diagnostics
    measured it (per-token NLL under q of c_E vs the model's own samples)."""
    expert = (diagnostics.get("expert") or {}).get("mean_nll")
    own = (diagnostics.get("own") or {}).get("mean_nll")
    if expert is None or own is None:
        return "their distance from the model's own style was not measured in this run"
    if expert > own:
        return (f"correct, and further from the model's own style than its own samples (per-token NLL "
                f"{expert:.2f} vs {own:.2f} above)")
    return f"correct, and not further from the model's own style than its own samples (per-token NLL {expert:.2f} vs {own:.2f})"


_DPO_METHODS = ("exp_dpo_offline", "dpo_expert_offline", "exp_dpo_online", "dpo_expert_online")


def dpo_summary(report: dict[str, Any]) -> str:
    lines = []
    levels = [k for k in next(iter(report["methods"].values()))["by_level"]]
    def overall(name: str) -> float | None:
        entry = report["methods"].get(name)
        if entry is None:
            return None
        return statistics.fmean(entry["by_level"][lv]["pass@8"] for lv in levels)
    for a, b, what in (("exp_dpo_offline", "dpo_expert_offline", "offline: c~ vs c_E"),
                       ("exp_dpo_online", "dpo_expert_online", "online: c~ vs c_E"),
                       ("exp_dpo_online", "exp_dpo_offline", "c~: online vs offline"),
                       ("dpo_expert_online", "dpo_expert_offline", "c_E: online vs offline")):
        x, y = overall(a), overall(b)
        if x is not None and y is not None:
            lines.append(f"- {what}: mean pass@8 over levels {100 * x:.1f} vs {100 * y:.1f} "
                         f"({100 * (x - y):+.1f} points, measured).")
    base = overall("base")
    for name in _DPO_METHODS:
        x = overall(name)
        if x is not None and base is not None and x < base - 0.05:
            lines.append(f"- {report['methods'][name]['label']} ends below the base model (mean pass@8 over levels "
                         f"{100 * x:.1f} vs {100 * base:.1f}): at DPO lr {report['runs'][name]['settings']['lr']} and "
                         f"beta {report['runs'][name]['settings']['beta']} it damaged what the base model "
                         "could do.")
    for name in _DPO_METHODS:
        losses = report["training"].get(name, {}).get("final_dpo_loss") or []
        losses = [v for v in losses if v is not None]
        if losses:
            lines.append(f"- final DPO loss, {report['methods'][name]['label']}: {statistics.fmean(losses):.3f}")
    return "\n".join(lines)


def training_section(report: dict[str, Any], methods: list[Method], figs: dict[str, str]) -> list[str]:
    out = ["## Training", ""]
    rows = ["| method | zero-signal groups (mean over steps) | all-wrong groups | positive rows per question | seconds per seed |",
            "| --- | --- | --- | --- | --- |"]
    for method in methods:
        t = report["training"].get(method.name, {})
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"
        rows.append(f"| {method.label} | {fmt(t.get('zero_signal_fraction_mean'))} | "
                    f"{fmt(t.get('all_wrong_fraction_mean'))} | {fmt(t.get('positives_per_question_mean'))} | "
                    f"{t.get('seconds_per_seed')} |")
    out += rows + [""]
    for method in methods:
        acceptance = report["training"].get(method.name, {}).get("explanation_acceptance") or []
        first = acceptance[0] if acceptance else []
        if not first:
            continue
        if method.online:
            out += [f"{method.label}: explanations regenerated from the current policy; share of hinted samples "
                    f"accepted {100 * first[0]['rate']:.0f}% at step {first[0]['step']} -> "
                    f"{100 * first[-1]['rate']:.0f}% at step {first[-1]['step']} (first seed).", ""]
        else:
            rate = statistics.fmean(p["rate"] for p in first)
            out += [f"{method.label}: {100 * rate:.0f}% of the initial policy's hinted samples were accepted as "
                    "self-explanations (first seed, mean over the steps that generated).", ""]
    if "zero_signal" in figs:
        out += [f"![zero-signal groups]({figs['zero_signal']})", ""]
    for method in methods:
        key = f"curves_{method.name}"
        if key in figs:
            out += [f"![{method.label} learning curves]({figs[key]})", ""]
    if "figure6_dpo" in figs:
        out += ["Figure 6 shape (DPO loss vs accuracy):", "", f"![DPO loss vs accuracy]({figs['figure6_dpo']})", ""]
    return out


def diagnostics_section(report: dict[str, Any], figs: dict[str, str]) -> list[str]:
    d = report["diagnostics"]
    out = [f"## Diagnostics (base model, level {d.get('level')}, {d.get('questions')} held-out questions)", "",
           "| completion | n | per-token NLL under q | answer reachability pi(a*|q,c) |", "| --- | --- | --- | --- |"]
    for kind, label in (("self_explanation", "self-explanation c~"), ("expert", "expert solution c_E"),
                        ("own", "own sample c")):
        entry = d.get(kind) or {}
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"
        out.append(f"| {label} | {entry.get('n', 0)} | {fmt(entry.get('mean_nll'))} | "
                   f"{fmt(entry.get('mean_reachability'))} |")
    out += ["", f"Hinted answers right: {100 * d.get('hinted_correct', 0):.0f}% of samples.", "",
            f"![NLL histograms]({figs['diagnostics_nll']})", "",
            f"![reachability histograms]({figs['diagnostics_reachability']})", ""]
    return out
