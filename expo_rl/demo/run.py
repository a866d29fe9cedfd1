"""``expo-rl demo`` end to end: base model -> one ``expo-rl train`` run per (method, seed) ->
the base model's and every run's held-out tables, diagnostics -> report.

The demo orchestrates; the runtime trains. Each run is a shipped preset
(``expo_rl/presets/demo/<method>.yaml``) with ``--set`` overrides (``runs.py``), run by
``expo_rl.engine.runtime.train`` in this process or in a pool of worker processes (``jobs.py``),
and the report is assembled in seed and method order either way. Every method of a seed starts
from the same base model, sees the same training questions in the same order (the task's
training pool, ``expo_rl.tasks.pools``) and is evaluated on the same held-out questions with the
same sampling seed; only the loss terms and their data differ (``methods.py``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from expo_rl.demo.budgets import Budget
from expo_rl.demo.build_base import META_FILE, build_base, build_shipped_recipe
from expo_rl.demo.jobs import run_jobs
from expo_rl.demo.methods import Method
from expo_rl.demo.report import write_report
from expo_rl.demo.runs import DemoSettings, run_spec
from expo_rl.policy.loading import DEMO_BASE, DEMO_BASE_DIR
from expo_rl.tasks import DemoTask, load_task


@dataclass(frozen=True)
class DemoConfig:
    """Plain values the command line resolved."""

    task_spec: str
    budget: Budget
    methods: list[Method]
    seeds: list[int]
    out_dir: Path
    rebuild_base: bool
    command: str
    lr: float | None = None       # GRPO-family learning rate (None: the presets')
    dpo_lr: float | None = None   # DPO learning rate (None: the presets')
    progress: bool = True
    workers: int = 1        # processes running the jobs (``jobs.py``); 1 = this process
    threads: int = 1        # torch threads per worker process (``workers`` > 1)

    @property
    def base_dir(self) -> Path:
        """The shipped model for the built-in task, else (or when rebuilt) OUT/base_model."""
        if self.task_spec == "modular" and not self.rebuild_base:
            return DEMO_BASE_DIR
        return self.out_dir / "base_model"


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Run the demo and write ``report.md``, ``report.json`` and the figures to ``out_dir``."""
    started = time.perf_counter()
    load_at_start = _load_average()
    task = load_task(config.task_spec)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    base_meta = ensure_base(task, config)
    base_policy = DEMO_BASE if config.base_dir == DEMO_BASE_DIR else str(config.base_dir)
    settings = DemoSettings(task_spec=config.task_spec, task=task, budget=config.budget, base_policy=base_policy,
                            out_dir=config.out_dir, lr=config.lr, dpo_lr=config.dpo_lr)
    specs = [run_spec(method, seed, settings) for seed in config.seeds for method in config.methods]
    bar = tqdm(total=len(config.seeds) + len(specs) + 1, desc=f"demo ({len(specs)} training runs)", unit="job",
               disable=not config.progress)
    done = run_jobs(specs, diagnostic_questions=config.budget.diagnostic_questions, workers=config.workers,
                    threads=config.threads, bar=bar, show_run_progress=config.progress)
    bar.close()
    results: dict[str, dict[int, list[dict[str, float]]]] = {"base": {}}
    runs: dict[str, list[Any]] = {m.name: [] for m in config.methods}
    for seed in config.seeds:  # in seed order, whatever order the jobs finished in
        _collect(results, "base", done.base[seed])
        for method in config.methods:
            run = done.runs[(seed, method.name)]
            runs[method.name].append(run)
            _collect(results, method.name, run.by_level)
    wall = time.perf_counter() - started
    machine = machine_description(load_at_start)
    machine["workers"] = config.workers
    if config.workers > 1:
        machine["threads_per_worker"] = config.threads
    first = specs[0].config()
    context = {
        "task": task.name, "task_spec": config.task_spec, "budget": config.budget.name,
        "command": config.command, "seeds": config.seeds, "wall_seconds": round(wall, 1),
        "machine": machine, "base_model": base_meta, "budget_settings": asdict(config.budget),
        "eval": {"per_level": first.data.task_held_out, "samples": first.eval.final_n, "ks": first.eval.final_k,
                 "temperature": first.eval.temperature or first.sampling.temperature},
    }
    return write_report(config.out_dir, task, config.methods, results, runs, done.diagnostics, context)


def _collect(results: dict[str, dict[int, list[dict[str, float]]]], name: str,
             by_level: dict[int, dict[str, float]]) -> None:
    table = results.setdefault(name, {})
    for level, values in by_level.items():
        table.setdefault(level, []).append(values)


def ensure_base(task: DemoTask, config: DemoConfig) -> dict[str, Any]:
    """Metadata of the base model in ``config.base_dir``, building it first when asked to or
    when the directory has none (user tasks)."""
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
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_description(load_at_start: list[float] | None = None) -> dict[str, Any]:
    """Where the run ran: a wall time means little without the machine and its load."""
    return {"platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average_at_start": load_at_start,
            "load_average_at_end": _load_average()}
