"""The demo's units of work, and running them in this process or in worker processes.

One seed of the demo splits into independent jobs:

* ``prepare``: evaluate the base model and build the initial positives (self-explanations and,
  for DPO, wrong samples) that the seed's methods share;
* one ``method`` job per compared method: train a copy of the base model, evaluate it;
  methods without positives (plain GRPO) do not wait for ``prepare``;
* ``diagnostics`` (once per run): ExPO's NLL / reachability diagnostics of the base model.

Every job seeds its own random streams from its seed (``train_method``, ``sample`` and the
evaluation take explicit seeds; nothing reads a global generator another job advanced), so a
job's result does not depend on the process that runs it or on the order: ``--workers 2`` writes
the same tables as ``--workers 1`` at the same thread count (``tests/test_demo_run.py`` checks).

Why processes and not threads: the demo's model is tiny (0.7M parameters), so one torch op is
too small to keep two OpenMP threads busy; two single-threaded processes, one job each, use two
cores about twice as well. The pool is the standard library's ``ProcessPoolExecutor`` (spawn
start method, safe with torch); progress ticks travel back over a ``multiprocessing`` queue.
"""

from __future__ import annotations

import queue as queue_module
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.explanations import ExplanationSet
from expo_rl.demo.methods import Method
from expo_rl.demo.train import Positives, TrainRecord, TrainSettings

KS = (1, 8)
ByLevel = dict[int, dict[str, float]]


@dataclass(frozen=True)
class JobPlan:
    """What every job needs besides its seed and method (plain, picklable values)."""

    task_spec: str
    base_dir: Path
    settings: TrainSettings
    train_pool: list[Problem]
    held_out: dict[int, list[Problem]]
    curve_set: dict[int, list[Problem]]
    eval_samples: int
    diagnostic_questions: int
    want_rejected: bool


@dataclass
class JobResults:
    """Everything the report needs, keyed by seed (and method)."""

    base: dict[int, ByLevel] = field(default_factory=dict)
    methods: dict[tuple[int, str], tuple[TrainRecord, ByLevel]] = field(default_factory=dict)
    positives_stats: dict[int, dict[str, float]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def store_prepared(self, seed: int, out: tuple[ByLevel, Positives]) -> Positives:
        """Keep a ``prepare_job`` result (base model's tables, positives' statistics); returns
        the positives for the seed's methods."""
        self.base[seed], positives = out
        self.positives_stats[seed] = positives_summary(seed, positives)
        return positives


# -- the jobs (module-level functions: a worker process imports and runs them) -----------------

_WORKER: dict[str, Any] = {}


def _loaded(plan: JobPlan) -> tuple[Any, Any, Any]:
    """(task, base model, tokenizer), loaded once per process and kept for its later jobs."""
    key = (plan.task_spec, str(plan.base_dir))
    if _WORKER.get("key") != key:
        from expo_rl.demo.build_base import load_base
        from expo_rl.demo.tasks import load_task

        base, tokenizer = load_base(plan.base_dir)
        _WORKER.update(key=key, task=load_task(plan.task_spec), base=base, tokenizer=tokenizer)
    return _WORKER["task"], _WORKER["base"], _WORKER["tokenizer"]


def eval_seed(seed: int) -> int:
    """Seed of the held-out evaluation: the same for the base model and every method."""
    return seed * 7_777


def prepare_job(plan: JobPlan, seed: int, eval_progress: Any = None) -> tuple[ByLevel, Positives]:
    """The base model's held-out results and the seed's initial positives."""
    from expo_rl.demo.evaluate import evaluate_levels
    from expo_rl.demo.train import initial_positives

    task, base, tokenizer = _loaded(plan)
    by_level = evaluate_levels(base, tokenizer, task, plan.held_out, n=plan.eval_samples, ks=KS,
                               temperature=plan.settings.temperature, seed=eval_seed(seed),
                               progress=eval_progress)
    positives = initial_positives(base, tokenizer, task, plan.train_pool, settings=plan.settings,
                                  seed=seed * 9_973, want_rejected=plan.want_rejected)
    return by_level, positives


def method_job(plan: JobPlan, seed: int, method: Method, positives: Positives,
               train_progress: Any = None, eval_progress: Any = None) -> tuple[TrainRecord, ByLevel]:
    """Train ``method`` from the base model for one seed and evaluate it on the held-out set."""
    from expo_rl.demo.evaluate import evaluate_levels
    from expo_rl.demo.train import train_method

    task, base, tokenizer = _loaded(plan)
    model, record = train_method(method, base, tokenizer, task, plan.train_pool, positives, plan.settings,
                                 seed=seed, curve_set=plan.curve_set, progress=train_progress)
    by_level = evaluate_levels(model, tokenizer, task, plan.held_out, n=plan.eval_samples, ks=KS,
                               temperature=plan.settings.temperature, seed=eval_seed(seed),
                               progress=eval_progress)
    return record, by_level


def diagnostics_job(plan: JobPlan, seed: int) -> dict[str, Any]:
    """ExPO diagnostics of the base model on the hardest level's first held-out questions."""
    from expo_rl.demo.diagnostics import diagnose

    task, base, tokenizer = _loaded(plan)
    hardest = max(task.levels)
    diagnostics = diagnose(base, tokenizer, task, plan.held_out[hardest][:plan.diagnostic_questions],
                           temperature=plan.settings.temperature, seed=seed)
    diagnostics["level"] = hardest
    return diagnostics


def needs_positives(method: Method) -> bool:
    """Whether a method waits for its seed's ``prepare`` job (plain GRPO does not)."""
    return method.positive != "none" or method.family == "dpo"


NO_POSITIVES = Positives(ExplanationSet())


# -- running them ------------------------------------------------------------------------------

class _QueueTicks:
    """A progress sink with tqdm's ``update(n)`` that sends ``(bar, n)`` to the parent process."""

    def __init__(self, channel: Any, bar: str) -> None:
        self.channel, self.bar = channel, bar

    def update(self, n: int = 1) -> None:
        self.channel.put((self.bar, n))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_jobs(plan: JobPlan, seeds: list[int], methods: list[Method], *, workers: int, threads: int,
             bars: dict[str, Any]) -> JobResults:
    """Run every job of the demo; ``bars``: ``"train"`` (steps) and ``"eval"`` (levels) sinks.

    ``workers == 1`` runs the jobs here, in the order prepare, methods (per seed), diagnostics;
    more run them in a pool of that many processes with ``threads`` torch threads each.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _WORKER.clear()  # the base model may have been rebuilt in the same directory since the last run
    if workers == 1:
        return _run_here(plan, seeds, methods, bars)
    return _run_pool(plan, seeds, methods, workers=workers, threads=threads, bars=bars)


def _run_here(plan: JobPlan, seeds: list[int], methods: list[Method], bars: dict[str, Any]) -> JobResults:
    results = JobResults()
    for seed in seeds:
        positives = results.store_prepared(seed, prepare_job(plan, seed, bars["eval"]))
        for method in methods:
            results.methods[(seed, method.name)] = method_job(plan, seed, method, positives,
                                                              bars["train"], bars["eval"])
    results.diagnostics = diagnostics_job(plan, seeds[0])
    return results


def _run_pool(plan: JobPlan, seeds: list[int], methods: list[Method], *, workers: int, threads: int,
              bars: dict[str, Any]) -> JobResults:
    import multiprocessing

    results = JobResults()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        channel = manager.Queue()
        train_ticks, eval_ticks = _QueueTicks(channel, "train"), _QueueTicks(channel, "eval")
        pending: dict[Future, Callable[[Any], None]] = {}

        def submit_method(seed: int, method: Method, positives: Positives) -> None:
            future = pool.submit(method_job, plan, seed, method, positives, train_ticks, eval_ticks)
            pending[future] = lambda out: results.methods.__setitem__((seed, method.name), out)

        def on_prepared(seed: int) -> Callable[[Any], None]:
            def store(out: tuple[ByLevel, Positives]) -> None:
                positives = results.store_prepared(seed, out)
                for method in methods:
                    if needs_positives(method):
                        submit_method(seed, method, positives)
            return store

        # FIFO queue: each seed's prepare job first, the methods that need no positives next.
        for seed in seeds:
            pending[pool.submit(prepare_job, plan, seed, eval_ticks)] = on_prepared(seed)
            for method in methods:
                if not needs_positives(method):
                    submit_method(seed, method, NO_POSITIVES)
        pending[pool.submit(diagnostics_job, plan, seeds[0])] = lambda out: setattr(results, "diagnostics", out)
        try:
            while pending:
                done, _ = wait(list(pending), timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(channel, bars)
                for future in done:
                    pending.pop(future)(future.result())  # a worker's exception surfaces here
        except BaseException:
            for future in pending:  # do not start queued jobs after a failure or Ctrl-C
                future.cancel()
            raise
        _drain(channel, bars)
    return results


def _drain(channel: Any, bars: dict[str, Any]) -> None:
    while True:
        try:
            bar, n = channel.get_nowait()
        except queue_module.Empty:
            return
        bars[bar].update(n)


def positives_summary(seed: int, positives: Positives) -> dict[str, float]:
    explanations = positives.explanations
    return {"seed": seed, "coverage": explanations.coverage, "hinted_correct": explanations.hinted_correct,
            "hinted_strict": explanations.hinted_strict}
