"""``expo-rl train``: run any method (SFT, RFT, online RFT, DPO, PPO, GRPO, ExPO) from a preset.

A method is a list of loss terms, each a data source x reward function x gradient coefficient
(SPEC section 2), over one shared training step. CONFIG is a shipped preset name or a YAML
file; ``--set`` changes any key. Multi-process: ``accelerate launch [--config_file
expo_rl/presets/accelerate/<fsdp|zero3|ddp>.yaml] -m expo_rl.cli train CONFIG``.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
from pathlib import Path

import yaml

from expo_rl.engine.config import (
    PRESET_DIR,
    RunConfig,
    TermConfig,
    config_dict,
    load_config,
    preset_names,
    reward_names,
)
from expo_rl.engine.typed_config import ConfigError, describe

EXAMPLES = """\
examples:
  expo-rl train grpo                                   # tiny GRPO preset, a few CPU seconds
  expo-rl train sft --set train.steps=20 --set optim.lr=1e-4
  expo-rl train gpu/grpo --set model.policy=Qwen/Qwen2.5-1.5B-Instruct
  expo-rl train my_run.yaml --resume                   # continue from the last complete checkpoint
  expo-rl train demo/exp_grpo --set train.seed=3       # a row of `expo-rl demo` (task: modular)
  expo-rl train demo/grpo --task my_task.py --set model.policy=OUT/base_model
  accelerate launch --num_processes 2 -m expo_rl.cli train gpu/grpo

--set takes dotted keys (terms are indexed: terms.0.weight=0.5); values are parsed as YAML,
so 1e-5, true, null and [1, 2] work. Keys (type: meaning):
"""


def _key_table() -> str:
    rows = describe(RunConfig)
    rows.append(("terms.N.<key>", "", "see 'terms' keys below: source, coefficient, name, reward, "
                 "weight, source_args, coefficient_args"))

    rows += [(f"terms.N.{k}", t, h) for k, t, h in describe(TermConfig)]
    width = max(len(k) for k, _, _ in rows)
    return "\n".join(f"  {k:<{width}}  {t}: {h}" if t else f"  {k:<{width}}  {h}" for k, t, h in rows
                     if k != "terms")


def _registries_text() -> str:
    """Every registered source with its options, every coefficient with its hyper-parameters."""
    # torch-heavy registries: imported only when the help text is built (see format_help)
    from expo_rl.core.coefficients import COEFFICIENTS
    from expo_rl.sources import SOURCES

    lines = ["", "data sources (terms.N.source) and their source_args:"]
    for name, spec in sorted(SOURCES.items()):
        lines.append(f"  {name}: {spec.description}")
        for f in dataclasses.fields(spec.options):
            default = f.default if f.default is not dataclasses.MISSING else "required"
            lines.append(f"      {f.name} (default {default!r}): {f.metadata.get('help', '')}")
    lines += ["", "gradient coefficients (terms.N.coefficient) and their coefficient_args:"]
    for name, fn in sorted(COEFFICIENTS.items()):
        params = [f"{p.name}={p.default!r}" for p in inspect.signature(fn).parameters.values()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY]
        doc = (inspect.getdoc(fn) or "").splitlines()
        lines.append(f"  {name}({', '.join(params)}): {doc[0] if doc else ''}")
    lines += ["", f"rewards (terms.N.reward, or terms.N.rewards: [{{name, weight, args, label}}, ...] "
              f"summed with weights): {', '.join(reward_names())}, null (none), "
              f"or 'package.module:function' (fn(completion, reference, **row_fields) -> float)"]
    return "\n".join(lines)


def _presets_text() -> str:
    gpu = sorted(p.stem for p in (PRESET_DIR / "gpu").glob("*.yaml"))
    return (f"shipped presets (tiny model, CPU, seconds): {', '.join(preset_names())}\n"
            f"GPU presets (real model, bf16): {', '.join('gpu/' + n for n in gpu)}\n"
            f"demo presets (expo-rl demo's methods, task plugins): "
            f"{', '.join('demo/' + p.stem for p in sorted((PRESET_DIR / 'demo').glob('*.yaml')))}\n"
            f"accelerate configs: {PRESET_DIR / 'accelerate'}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a policy with any method (sft, rft, online_rft, dpo, ppo, grpo, ExPO) from a preset",
        description=__doc__ + "\n" + _presets_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plain_help = parser.format_help

    def format_help() -> str:
        # Built on demand: listing the registries imports torch, which `expo-rl <other>` need not pay.
        parser.epilog = EXAMPLES + _key_table() + "\n" + _registries_text()
        return plain_help()

    parser.format_help = format_help
    parser.add_argument("config", metavar="CONFIG",
                        help="a preset name (e.g. grpo, gpu/dpo) or a path to a YAML config file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (dotted, e.g. optim.lr=1e-5); repeatable")
    parser.add_argument("--task", default=None, metavar="TASK",
                        help="train on a task plugin: a built-in name (modular) or a .py file defining a "
                             "DemoTask (sets data.task; see docs/ADDING_A_TASK.md)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest complete checkpoint in train.output_dir "
                             "(starts fresh when there is none)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in train.output_dir (its checkpoints, metrics "
                             "and TensorBoard files; keyed caches stay); without it or --resume a "
                             "used output directory is refused")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit without training")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        overrides = list(args.overrides) + ([f"data.task={args.task}"] if args.task else [])
        config = load_config(args.config, overrides)
    except ConfigError as error:
        print(f"expo-rl train: config error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(yaml.safe_dump(config_dict(config), sort_keys=False))
        return 0
    from expo_rl.engine.runtime import train  # torch and accelerate: not for `expo-rl --help`

    summary = train(config, resume=args.resume, overwrite=args.overwrite)
    if summary.get("is_main_process", True):
        skipped = summary.get("skipped_updates", 0)
        note = f" ({skipped} non-finite updates skipped)" if skipped else ""
        last = summary["checkpoint"] if summary["checkpoint"] != "None" else (
            "none (no save point had only finite updates)" if skipped else "none")
        print(f"done: {summary['steps']} steps{note}; metrics {summary['metrics']}; last checkpoint {last}")
        if config.train.plot:
            draw_curves(summary["metrics"])
    return 0


def draw_curves(metrics: str) -> None:
    """Learning curves next to the metrics (``<output_dir>/plots/*.png``); a failure to draw is
    reported, never fatal: the run itself is done and saved."""
    from expo_rl.engine.curves import plot_metrics  # matplotlib: only when a run has finished

    folder = Path(metrics).parent
    try:
        written = plot_metrics(metrics, folder / "plots", title=folder.resolve().name)
    except Exception as error:  # matplotlib/font trouble must not turn a finished run into a failure
        print(f"warning: could not draw learning curves: {type(error).__name__}: {error}", file=sys.stderr)
        return
    if written:
        print(f"curves: {folder / 'plots'} ({len(written)} PNG files; redraw with expo-rl plot {folder})")
