"""``expo-rl demo``: the embedded ExPO experiment on a CPU in minutes.

A tiny Llama model (shipped, ~0.7M parameters) that solves easy levels of a synthetic task and
almost never the hardest one is trained, with the same budget and questions, by GRPO, GRPO with
SFT on expert solutions ("SFT-GT-CoT") and ExP-GRPO (SFT on the model's own self-explanations);
every model is then evaluated (pass@1, pass@8 per level) on held-out questions. The report
(``report.md``, ``report.json``, figures) lands in ``--out``.

Examples:
  expo-rl demo                      # default budget, one seed (<= 15 min on 2 CPU cores)
  expo-rl demo --quick              # a first look (<= 3 min)
  expo-rl demo --full --seeds 3     # + refreshed ExP-GRPO and the ExP-DPO / expert-DPO grid
  expo-rl demo --task my_task.py    # your own task in one file (see docs/ADDING_A_TASK.md)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the embedded ExPO demo (GRPO vs ExP-GRPO on a toy task, CPU, minutes)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="small budget for CI and a first look (<= 3 min)")
    size.add_argument("--full", action="store_true",
                      help="also ExP-GRPO with refreshed explanations, ExP-DPO offline/online and DPO "
                           "with expert solutions (Table 2 shape) and the Figure-6 curves")
    size.add_argument("--budget", choices=("tiny", "quick", "default", "full"), default=None,
                      help=argparse.SUPPRESS)  # "tiny" keeps tests short
    parser.add_argument("--methods", default=None, metavar="NAME,NAME",
                        help="run only these methods (comma-separated preset names of the chosen set, e.g. "
                             "--full --methods exp_dpo_offline,dpo_expert_offline); the base model is always "
                             "evaluated")
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0..N-1); tables show mean ± std")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="first seed (seeds FIRST..FIRST+N-1), to split seeds over processes")
    parser.add_argument("--out", type=Path, default=Path("expo-demo"), help="report directory (default ./expo-demo)")
    parser.add_argument("--task", default="modular",
                        help="built-in task name or path to a task .py file defining a DemoTask")
    parser.add_argument("--rebuild-base", action="store_true",
                        help="retrain the base model (into OUT/base_model) instead of using the shipped one")
    parser.add_argument("--lr", type=float, default=None, help="learning rate of the GRPO-family methods")
    parser.add_argument("--dpo-lr", type=float, default=None, help="learning rate of the DPO methods (--full)")
    parser.add_argument("--steps", type=int, default=None, help="override the budget's training steps")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes that train the methods side by side (default: one per two runs, at "
                             "most one per core; 1 when the machine is already busy); results do not "
                             "depend on it")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads per process (default: cores / workers, or 1 when the "
                             "machine is already busy: on a shared CPU one thread per process is several "
                             "times faster)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(run=run)


def parallelism(workers: int | None, threads: int | None, runs: int) -> tuple[int, int]:
    """(worker processes, torch threads per process) for ``runs`` method runs (seeds x methods).

    Unset values are filled for the machine. Idle machine: one worker per two runs, at most
    one per core, sharing the cores' threads. Measured on 2 cores (default budget, 20 steps):
    one process with 2 threads trains a method at 1.45 s/step, a 1-thread worker at 2.3 s/step,
    so two workers only pay when there are enough runs to keep both busy (3 runs: 115 s vs
    117 s wall). Busy machine (1-minute load >= half the cores): one worker, one thread (OpenMP
    threads of one process wait on each other, so on a contended CPU they mostly spin).
    """
    cores = os.cpu_count() or 1
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores / 2
    if workers is None:
        workers = 1 if busy else max(1, min(cores, runs // 2))
    if threads is None:
        threads = 1 if busy else max(1, cores // workers)
    return workers, threads


def command_line(args: argparse.Namespace, budget: str) -> str:
    """The command that reproduces this run (for the report)."""
    parts = ["expo-rl", "demo"]
    if budget != "default":
        parts.append(f"--{budget}" if budget in ("quick", "full") else f"--budget={budget}")
    parts += [f"--seeds={args.seeds}", f"--out={args.out}"]
    if args.first_seed:
        parts.append(f"--first-seed={args.first_seed}")
    if args.task != "modular":
        parts.append(f"--task={args.task}")
    for flag, value in (("--lr", args.lr), ("--dpo-lr", args.dpo_lr), ("--steps", args.steps)):
        if value is not None:
            parts.append(f"{flag}={value}")
    if args.methods:
        parts.append(f"--methods={args.methods}")
    if args.rebuild_base:
        parts.append("--rebuild-base")
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    # torch and the demo: imported when the command runs, not when `expo-rl` builds its parser
    import torch

    from expo_rl.demo.budgets import get_budget
    from expo_rl.demo.methods import default_methods, full_methods
    from expo_rl.demo.run import DemoConfig, run_demo

    if args.seeds < 1 or args.first_seed < 0:
        print("expo-rl demo: --seeds must be >= 1 and --first-seed >= 0", file=sys.stderr)
        return 2
    for flag, value in (("--workers", args.workers), ("--threads", args.threads)):
        if value is not None and value < 1:
            print(f"expo-rl demo: {flag} must be >= 1, got {value}", file=sys.stderr)
            return 2
    name = args.budget or ("quick" if args.quick else "full" if args.full else "default")
    budget = get_budget(name)
    if args.steps is not None:
        if args.steps < 1:
            print("expo-rl demo: --steps must be >= 1", file=sys.stderr)
            return 2
        budget = dataclasses.replace(budget, steps=args.steps)
    methods = full_methods() if name == "full" else default_methods()
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
        known = {m.name: m for m in methods}
        unknown = [m for m in wanted if m not in known]
        if unknown or not wanted:
            print(f"expo-rl demo: --methods {args.methods!r}: unknown {unknown}; allowed (this budget): "
                  f"{', '.join(known)}", file=sys.stderr)
            return 2
        methods = [known[m] for m in wanted]
    workers, threads = parallelism(args.workers, args.threads, runs=args.seeds * len(methods))
    torch.set_num_threads(threads)
    config = DemoConfig(task_spec=args.task, budget=budget, methods=methods, seeds=list(range(args.first_seed, args.first_seed + args.seeds)),
                        out_dir=args.out, rebuild_base=args.rebuild_base,
                        command=command_line(args, name), lr=args.lr, dpo_lr=args.dpo_lr,
                        progress=not args.no_progress, workers=workers, threads=threads)
    report = run_demo(config)
    print((args.out / "report.md").read_text())
    print(f"report: {args.out / 'report.md'} · {args.out / 'report.json'} · wall {report['wall_seconds']:.0f} s")
    return 0
