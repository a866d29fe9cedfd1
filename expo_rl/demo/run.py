"""``expo-rl demo`` end to end: base model -> question pools -> per seed: evaluate the base,
build the initial positives, train and evaluate every method -> diagnostics -> report.

Every method of a seed starts from the same base model, sees the same training questions in the
same order (the pool is shared) and is evaluated on the same held-out questions; only the loss
terms and the positives differ (see ``methods.py``).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from expo_rl.demo.budgets import Budget, scaled_mix
from expo_rl.demo.methods import Method
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.demo.train import TrainRecord, TrainSettings

KS = (1, 8)


@dataclass(frozen=True)
class DemoConfig:
    """Plain values the command line resolved."""

    task_spec: str
    budget: Budget
    methods: list[Method]
    seeds: list[int]
    out_dir: Path
    base_dir: Path
    rebuild_base: bool
    settings_overrides: dict[str, Any]
    command: str
    progress: bool = True


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo and write ``report.md``, ``report.json`` and the figures to ``out_dir``."""
    import torch
    from tqdm.auto import tqdm

    from expo_rl.demo.build_base import load_base
    from expo_rl.demo.diagnostics import diagnose
    from expo_rl.demo.evaluate import evaluate_levels
    from expo_rl.demo.pools import make_pools
    from expo_rl.demo.report import write_report
    from expo_rl.demo.tasks import load_task
    from expo_rl.demo.train import initial_positives, train_method

    started = time.perf_counter()
    load_at_start = _load_average()
    task = load_task(config.task_spec)
    budget = config.budget
    config.out_dir.mkdir(parents=True, exist_ok=True)
    base_meta = ensure_base(task, config)
    base, tokenizer = load_base(config.base_dir)
    mix = scaled_mix(budget.mix, task.levels)
    settings = TrainSettings(steps=budget.steps, questions_per_step=sum(mix.values()),
                             curve_every=budget.curve_every, curve_questions=budget.curve_questions,
                             group_size=budget.group_size, explanation_tries=budget.explanation_tries,
                             **config.settings_overrides)
    pools = make_pools(task, eval_per_level=budget.eval_per_level, mix=mix, steps=budget.steps)
    curve_set = {lv: ps[:budget.curve_questions] for lv, ps in pools.held_out.items()} if budget.curve_questions else {}

    results: dict[str, dict[int, list[dict[str, float]]]] = {"base": {}}
    records: dict[str, list[TrainRecord]] = {m.name: [] for m in config.methods}
    positives_stats: list[dict[str, float]] = []
    want_rejected = any(m.family == "dpo" for m in config.methods)
    eval_bar_total = len(config.seeds) * (1 + len(config.methods)) * len(task.levels)
    eval_bar = tqdm(total=eval_bar_total, desc="held-out evaluation", unit="level",
                    disable=not config.progress, position=1)
    for seed in config.seeds:
        torch.manual_seed(seed)
        _collect(results, "base", evaluate_levels(base, tokenizer, task, pools.held_out, n=budget.eval_samples,
                                                  ks=KS, temperature=settings.temperature,
                                                  seed=seed * 7_777, progress=eval_bar))
        positives = initial_positives(base, tokenizer, task, pools.train, settings=settings, seed=seed * 9_973,
                                      want_rejected=want_rejected)
        positives_stats.append({"seed": seed, "coverage": positives.explanations.coverage,
                                "hinted_correct": positives.explanations.hinted_correct,
                                "hinted_strict": positives.explanations.hinted_strict})
        for method in config.methods:
            bar = tqdm(total=settings.steps, desc=f"seed {seed} {method.label}", unit="step",
                       disable=not config.progress, position=0, leave=False)
            model, record = train_method(method, base, tokenizer, task, pools.train, positives, settings,
                                         seed=seed, curve_set=curve_set, progress=bar)
            bar.close()
            records[method.name].append(record)
            _collect(results, method.name, evaluate_levels(model, tokenizer, task, pools.held_out,
                                                           n=budget.eval_samples, ks=KS,
                                                           temperature=settings.temperature,
                                                           seed=seed * 7_777, progress=eval_bar))
            del model
    eval_bar.close()
    hardest = max(task.levels)
    diagnostics = diagnose(base, tokenizer, task, pools.held_out[hardest][:budget.diagnostic_questions],
                           temperature=settings.temperature, seed=config.seeds[0])
    diagnostics["level"] = hardest
    wall = time.perf_counter() - started
    context = {
        "task": task.name, "task_spec": config.task_spec, "budget": budget.name,
        "command": config.command, "seeds": config.seeds, "wall_seconds": round(wall, 1),
        "machine": machine_description(load_at_start), "base_model": base_meta, "mix": mix,
        "settings": asdict(settings), "eval": {"per_level": budget.eval_per_level,
                                               "samples": budget.eval_samples, "ks": list(KS)},
        "initial_positives": positives_stats,
    }
    return write_report(config.out_dir, task, config.methods, results, records, diagnostics, context)


def _collect(results: dict[str, dict[int, list[dict[str, float]]]], name: str,
             by_level: dict[int, dict[str, float]]) -> None:
    table = results.setdefault(name, {})
    for level, values in by_level.items():
        table.setdefault(level, []).append(values)


def ensure_base(task: DemoTask, config: DemoConfig) -> dict[str, Any]:
    """Metadata of the base model in ``config.base_dir``, building it first when asked to or
    when the directory has none (user tasks)."""
    import json

    from expo_rl.demo.build_base import META_FILE, build_base

    meta_path = config.base_dir / META_FILE
    if config.rebuild_base or not (config.base_dir / "config.json").is_file():
        budget = config.budget
        return build_base(task, config.base_dir, steps=budget.base_steps, batch=budget.base_batch,
                          lr=1e-3, size=budget.base_size, progress=config.progress)
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("task", task.name) != task.name:
        raise ValueError(f"the base model in {config.base_dir} was built for task {meta['task']!r}, "
                         f"not {task.name!r}; pass --rebuild-base or another --out")
    return meta


def _load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the platform has none)."""
    import os

    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_description(load_at_start: list[float] | None = None) -> dict[str, Any]:
    """Where the run ran: a wall time means little without the machine and its load."""
    import os

    import torch

    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_at_start": load_at_start,
            "load_average_at_end": _load_average()}
