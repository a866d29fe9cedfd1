"""The demo's units of work, and running them in this process or in worker processes.

The demo is a client of the runtime: it trains nothing itself. Its jobs are

* ``base``: the base model's held-out pass@k, with the same held-out questions, samples and
  seed as every run's final evaluation (``expo_rl.engine.held_out``), one per seed;
* ``run``: one ``expo-rl train`` run of a method's preset (``runs.RunSpec``) through
  ``expo_rl.engine.runtime.train``; it evaluates itself (``eval.*``) and leaves
  ``metrics.jsonl`` and ``eval_final.json`` in its output directory, which the job reads back;
* ``diagnostics`` (once): ExPO's NLL / reachability diagnostics of the base model.

Every run seeds its own random streams from its config, so a job's result does not depend on
the process that runs it or on the order: ``--workers 2`` writes the same tables as
``--workers 1`` at the same thread count (``tests/test_demo_run.py`` checks).

Why processes and not threads: the demo's model is tiny (0.7M parameters), so one torch op is
too small to keep two OpenMP threads busy; two single-threaded processes, one run each, use two
cores about twice as well. The pool is the standard library's ``ProcessPoolExecutor`` (spawn
start method, safe with torch).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from expo_rl.demo.diagnostics import diagnose
from expo_rl.demo.runs import RunSpec
from expo_rl.engine.held_out import ByLevel, held_out_pass_at_k, read_final
from expo_rl.engine.metrics import read_metrics
from expo_rl.engine.recipe import load_problem_set, prompt_function
from expo_rl.engine.runtime import train
from expo_rl.policy import load_policy


@dataclass
class RunResult:
    """What one run measured: its final held-out table, its per-step metrics, its wall time."""

    spec: RunSpec
    by_level: ByLevel
    steps: list[dict[str, float]]
    seconds: float

    @property
    def curve(self) -> list[dict[str, float]]:
        """Held-out pass@1 per level where the run evaluated: ``[{"step": s, "L1": v, ...}]``."""
        points = []
        for row in self.steps:
            levels = {key.split("/")[1]: value for key, value in row.items()
                      if key.startswith("eval/") and key.endswith("/pass@1")}
            if levels:
                points.append({"step": row["step"], **levels})
        return points

    def series(self, key: str) -> list[float]:
        """``key``'s value at every step that logged it (e.g. ``grpo/zero_signal_fraction``)."""
        return [row[key] for row in self.steps if key in row]


@dataclass
class JobResults:
    """Everything the report needs, keyed by seed (and method)."""

    base: dict[int, ByLevel] = field(default_factory=dict)
    runs: dict[tuple[int, str], RunResult] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)


# -- the jobs (module-level functions: a worker process imports and runs them) -----------------

def base_job(spec: RunSpec) -> ByLevel:
    """The base model's held-out table, as a run of ``spec`` would measure it before step 1."""
    config = spec.config()
    problem_set = load_problem_set(config)
    model, tokenizer = load_policy(config.model.policy)
    prompt = prompt_function(config, tokenizer, problem_set.task)
    return held_out_pass_at_k(model, tokenizer, config, problem_set, prompt, n=config.eval.final_n,
                              ks=config.eval.final_k, limit=None)


def run_job(spec: RunSpec, progress: bool = False) -> RunResult:
    """``expo-rl train`` with the spec's preset and overrides, in a fresh output directory."""
    config = spec.config(progress=progress)
    output_dir = Path(config.train.output_dir)
    if output_dir.exists():  # the demo owns OUT/runs: a rerun of the demo replaces its runs
        shutil.rmtree(output_dir)
    started = time.perf_counter()
    train(config)
    return RunResult(spec, read_final(output_dir)["by_level"], read_metrics(output_dir / "metrics.jsonl"),
                     time.perf_counter() - started)


def diagnostics_job(spec: RunSpec, questions: int) -> dict[str, Any]:
    """ExPO diagnostics of the base model on the hardest level's first held-out questions."""
    config = spec.config()
    problem_set = load_problem_set(config)
    model, tokenizer = load_policy(config.model.policy)
    hardest = max(problem_set.held_out)
    result = diagnose(model, tokenizer, problem_set.task, problem_set.held_out[hardest][:questions],
                      temperature=config.sampling.temperature, seed=config.train.seed,
                      tries=4, batch_size=config.sampling.batch_size)
    result["level"] = hardest
    return result


# -- running them ------------------------------------------------------------------------------

def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_jobs(specs: list[RunSpec], *, diagnostic_questions: int, workers: int, threads: int,
             bar: Any, show_run_progress: bool = False) -> JobResults:
    """Run every job of the demo (``bar``: a tqdm bar advanced once per finished job).

    ``workers == 1`` runs the jobs here, in the order base (per seed), runs, diagnostics; more run
    them in a pool of that many processes with ``threads`` torch threads each.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    results = JobResults()
    first_of_seed = {s.seed: s for s in reversed(specs)}
    jobs: list[tuple[Callable[..., Any], tuple, Callable[[Any], None]]] = []
    for seed, spec in sorted(first_of_seed.items()):
        jobs.append((base_job, (spec,), lambda out, seed=seed: results.base.__setitem__(seed, out)))
    for spec in specs:
        jobs.append((run_job, (spec, show_run_progress and workers == 1),
                     lambda out, spec=spec: results.runs.__setitem__((spec.seed, spec.method.name), out)))
    jobs.append((diagnostics_job, (specs[0], diagnostic_questions),
                 lambda out: setattr(results, "diagnostics", out)))
    if workers == 1:
        for fn, args, store in jobs:
            store(fn(*args))
            bar.update(1)
        return results
    _run_pool(jobs, workers=workers, threads=threads, bar=bar)
    return results


def _run_pool(jobs: list[tuple[Callable[..., Any], tuple, Callable[[Any], None]]], *, workers: int,
              threads: int, bar: Any) -> None:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        pending: dict[Future, Callable[[Any], None]] = {pool.submit(fn, *args): store for fn, args, store in jobs}
        try:
            while pending:
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.pop(future)(future.result())  # a worker's exception surfaces here
                    bar.update(1)
        except BaseException:
            for future in pending:  # do not start queued jobs after a failure or Ctrl-C
                future.cancel()
            raise
