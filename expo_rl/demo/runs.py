"""Which ``expo-rl train`` command each (method, seed) of the demo is.

A run is its method's preset (``expo_rl/presets/demo/<name>.yaml``) plus ``--set`` overrides for
what the demo varies: the seed, the output directory, and, away from the default budget and the
shipped task, the budget's sizes, the task and its base model. Only keys whose value differs
from the preset's are set, so the default demo's rows read
``expo-rl train demo/exp_grpo --set train.seed=0 --set train.output_dir=...``. The report prints
each row's command; running it gives that row's numbers (``tests/test_demo_run.py`` checks).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expo_rl.demo.budgets import Budget, scaled_mix
from expo_rl.demo.methods import Method
from expo_rl.engine.config import RunConfig, config_dict, load_config
from expo_rl.tasks import DemoTask


@dataclass(frozen=True)
class RunSpec:
    """One training run of the demo: ``expo-rl train <preset> --set <override> ...``."""

    method: Method
    seed: int
    overrides: tuple[str, ...]

    @property
    def command(self) -> str:
        words = ["expo-rl", "train", self.method.preset]
        for override in self.overrides:
            words += ["--set", override]
        return shlex.join(words)

    def config(self, *, progress: bool = False) -> RunConfig:
        """The resolved config (``train.progress`` only changes what is printed)."""
        config = load_config(self.method.preset, list(self.overrides))
        config.train.progress = progress
        return config


@dataclass(frozen=True)
class DemoSettings:
    """What the command line chose for every run (plain values)."""

    task_spec: str
    task: DemoTask
    budget: Budget
    base_policy: str          # a load_policy spec: "demo-base" or OUT/base_model
    out_dir: Path
    lr: float | None = None       # GRPO-family learning rate override
    dpo_lr: float | None = None   # DPO learning rate override


def wanted_values(method: Method, seed: int, s: DemoSettings) -> dict[str, Any]:
    """Dotted config keys -> the values this run needs."""
    budget = s.budget
    mix = scaled_mix(budget.mix, s.task.levels)
    per_step = sum(mix)
    values: dict[str, Any] = {
        "model.policy": s.base_policy, "data.task": s.task_spec, "data.task_mix": mix,
        "data.task_held_out": budget.eval_per_level, "sampling.max_new_tokens": s.task.max_new_tokens,
        "train.steps": budget.steps, "train.seed": seed,
        "train.output_dir": str(s.out_dir / "runs" / f"{method.name}-seed{seed}"),
        "eval.every": budget.curve_every, "eval.limit": budget.curve_questions or None,
        "eval.n": budget.curve_samples, "eval.final_n": budget.eval_samples,
    }
    if method.family == "grpo":
        values["terms.0.source_args.questions_per_step"] = per_step
        values["terms.0.source_args.group_size"] = budget.group_size
    term = method.positive_term
    if term is not None:
        values[f"terms.{term}.source_args.questions_per_step"] = per_step
        values[f"terms.{term}.source_args.explanations_per_question"] = budget.explanation_tries
        if method.online:
            values[f"terms.{term}.source_args.refresh_every"] = budget.refresh_every
    lr = s.dpo_lr if method.family == "dpo" else s.lr
    if lr is not None:
        values["optim.lr"] = lr
    return values


def run_spec(method: Method, seed: int, settings: DemoSettings) -> RunSpec:
    """The run's overrides: the wanted values that differ from the preset's."""
    preset = config_dict(load_config(method.preset))
    overrides = tuple(f"{key}={_yaml(value)}" for key, value in wanted_values(method, seed, settings).items()
                      if _lookup(preset, key) != value)
    return RunSpec(method, seed, overrides)


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree[int(part)] if isinstance(tree, list) else tree.get(part)
    return tree


def _yaml(value: Any) -> str:
    """A ``--set`` value that parses back (YAML) to ``value``."""
    if isinstance(value, str):
        return value
    return json.dumps(value)
