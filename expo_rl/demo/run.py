"""``expo-rl demo`` end to end: base model -> question pools -> per seed: evaluate the base,
build the initial positives, train and evaluate every method -> diagnostics -> report.

The per-seed work runs as independent jobs (``jobs.py``), in this process or in a pool of
worker processes; the report is assembled in seed and method order either way.

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
from expo_rl.demo.jobs import KS, JobPlan, run_jobs
from expo_rl.demo.methods import Method
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.demo.train import TrainRecord, TrainSettings


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
    workers: int = 1        # processes running the jobs (``jobs.py``); 1 = this process
    threads: int = 1        # torch threads per worker process (``workers`` > 1)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo and write ``report.md``, ``report.json`` and the figures to ``out_dir``."""
    from tqdm.auto import tqdm

    from expo_rl.demo.pools import make_pools
    from expo_rl.demo.report import write_report
    from expo_rl.demo.tasks import load_task

    started = time.perf_counter()
    load_at_start = _load_average()
    task = load_task(config.task_spec)
    budget = config.budget
    config.out_dir.mkdir(parents=True, exist_ok=True)
    base_meta = ensure_base(task, config)
    mix = scaled_mix(budget.mix, task.levels)
    settings = TrainSettings(steps=budget.steps, questions_per_step=sum(mix.values()),
                             curve_every=budget.curve_every, curve_questions=budget.curve_questions,
                             group_size=budget.group_size, explanation_tries=budget.explanation_tries,
                             **config.settings_overrides)
    pools = make_pools(task, eval_per_level=budget.eval_per_level, mix=mix, steps=budget.steps)
    curve_set = {lv: ps[:budget.curve_questions] for lv, ps in pools.held_out.items()} if budget.curve_questions else {}

    plan = JobPlan(task_spec=config.task_spec, base_dir=config.base_dir, settings=settings,
                   train_pool=pools.train, held_out=pools.held_out, curve_set=curve_set,
                   eval_samples=budget.eval_samples, diagnostic_questions=budget.diagnostic_questions,
                   want_rejected=any(m.family == "dpo" for m in config.methods))
    n_jobs = len(config.seeds) * len(config.methods)
    bars = {
        "train": tqdm(total=n_jobs * settings.steps, desc=f"training ({n_jobs} runs)", unit="step",
                      disable=not config.progress, position=0),
        "eval": tqdm(total=len(config.seeds) * (1 + len(config.methods)) * len(task.levels),
                     desc="held-out evaluation", unit="level", disable=not config.progress, position=1),
    }
    done = run_jobs(plan, config.seeds, config.methods, workers=config.workers, threads=config.threads, bars=bars)
    for bar in bars.values():
        bar.close()
    results: dict[str, dict[int, list[dict[str, float]]]] = {"base": {}}
    records: dict[str, list[TrainRecord]] = {m.name: [] for m in config.methods}
    for seed in config.seeds:  # in seed order, whatever order the jobs finished in
        _collect(results, "base", done.base[seed])
        for method in config.methods:
            record, by_level = done.methods[(seed, method.name)]
            records[method.name].append(record)
            _collect(results, method.name, by_level)
    positives_stats = [done.positives_stats[seed] for seed in config.seeds]
    diagnostics = done.diagnostics
    wall = time.perf_counter() - started
    machine = machine_description(load_at_start)
    machine["workers"] = config.workers
    if config.workers > 1:
        machine["threads_per_worker"] = config.threads
    context = {
        "task": task.name, "task_spec": config.task_spec, "budget": budget.name,
        "command": config.command, "seeds": config.seeds, "wall_seconds": round(wall, 1),
        "machine": machine, "base_model": base_meta, "mix": mix,
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

    from expo_rl.demo.build_base import META_FILE, build_base, build_shipped_recipe

    meta_path = config.base_dir / META_FILE
    if config.rebuild_base or not (config.base_dir / "config.json").is_file():
        budget = config.budget
        if config.task_spec == "modular" and budget.name != "tiny":
            # the shipped model's two-stage recipe: one stage on the same corpus gives a weaker base
            return build_shipped_recipe(config.base_dir, progress=config.progress)
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
