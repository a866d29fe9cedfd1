"""Allowed ranges of every number that has a sign or a range, checked generically at load time.

One declarative table per kind of setting, keyed by the dotted config key (``optim.lr``), by
``<coefficient>.<hyper-parameter>`` or a bare hyper-parameter name, and by source option name;
a dataclass field may instead carry ``metadata={"range": Range(...)}``. Besides the table, every
float must be finite, and an integer source option whose default is >= 1 (a count) must be >= 1
(>= 0 when its default is 0). Errors name the key and the allowed range:

    config key 'optim.max_grad_norm': -1.0 is not allowed; allowed: > 0 or null (null: no clipping)

The same ranges serve command-line flags through ``expo_rl.ranges.arg_type`` (argparse exits 2 with the flag
and the range).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from expo_rl.engine.typed_config import ConfigError
from expo_rl.ranges import FINITE, UNIT, Range, arg_type, ge, gt

# Dotted keys of RunConfig (list/tuple values: every element). A None value is allowed where the
# field's type allows it (it means "off" / "default").
CONFIG_RANGES: dict[str, Range] = {
    "sampling.temperature": gt(0, "training samples; 0 would make every sample of a question the same"),
    "sampling.top_p": Range(0.0, 1.0, lo_open=True),
    "sampling.max_new_tokens": ge(1),
    "sampling.batch_size": ge(1),
    "optim.lr": gt(0),
    "optim.weight_decay": ge(0),
    "optim.betas": Range(0.0, 1.0, hi_open=True),
    "optim.eps": gt(0),
    "optim.warmup_ratio": Range(0.0, 1.0, hi_open=True),
    "optim.min_lr_ratio": UNIT,
    "optim.max_grad_norm": gt(0, "null: no clipping"),
    "train.steps": ge(1),
    "train.mu": ge(1),
    "train.grad_accum": ge(1),
    "train.seed": ge(0),
    "train.save_every": ge(0, "0: only at the end"),
    "train.keep_last": ge(0, "0: keep all"),
    "data.limit": ge(1),
    "data.levels": ge(1),
    "terms.weight": ge(0, "a negative weight would train away from the term's objective"),
}

# Coefficient hyper-parameters: '<coefficient>.<name>' first, then the bare name.
COEFFICIENT_RANGES: dict[str, Range] = {
    "dpo.beta": gt(0, "a negative beta trains toward the rejected answers"),
    "beta": ge(0, "KL penalty weight"),
    "kl_beta": ge(0, "KL penalty weight"),
    "clip_eps": gt(0),
    "value_clip": gt(0),
    "value_coef": ge(0),
    "gamma": UNIT,
    "lam": UNIT,
}

# Source options by name (any source).
SOURCE_RANGES: dict[str, Range] = {
    "hint_fraction": UNIT,
    "refresh_every": ge(0, "0: offline"),
}


def _fail(key: str, value: Any, rng: Range, nullable: bool = False) -> ConfigError:
    return ConfigError(f"config key '{key}': {value!r} is not allowed; allowed: {rng.text(nullable)}")


def check_value(key: str, value: Any, rng: Range | None, *, nullable: bool = False) -> None:
    """Raise ConfigError when a number (or each number of a list) is outside ``rng`` / not finite."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            check_value(key, item, rng, nullable=False)
        return
    if isinstance(value, (int, float)):
        use = rng or FINITE
        if value not in use:
            raise _fail(key, value, use, nullable)


def _nullable(cls: type, name: str) -> bool:
    return "None" in str(inspect.get_annotations(cls).get(name, ""))


def check_dataclass(obj: Any, prefix: str, table: dict[str, Range], *, table_prefix: str = "") -> None:
    """Every numeric field of dataclass ``obj`` (recursively) against ``table`` / its metadata."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        table_key = f"{table_prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_dataclass(value, f"{key}.", table, table_prefix=f"{table_key}.")
            continue
        rng = f.metadata.get("range") or table.get(table_key)
        check_value(key, value, rng, nullable=_nullable(type(obj), f.name))


def check_config(config: Any) -> None:
    """Check a RunConfig: its sections, each term's weight, coefficient and source arguments."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_dataclass(value, f"{f.name}.", CONFIG_RANGES, table_prefix=f"{f.name}.")
    for i, term in enumerate(getattr(config, "terms", [])):
        check_value(f"terms.{i}.weight", term.weight, CONFIG_RANGES["terms.weight"])
        for name, value in term.coefficient_args.items():
            rng = COEFFICIENT_RANGES.get(f"{term.coefficient}.{name}") or COEFFICIENT_RANGES.get(name)
            check_value(f"terms.{i}.coefficient_args.{name}", value, rng)


def check_source_options(options: Any, path: str) -> None:
    """A source's options: the table, else counts (int, default >= 1) >= 1, other ints >= 0."""
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        rng = f.metadata.get("range") or SOURCE_RANGES.get(f.name)
        default = f.default
        if rng is None and isinstance(default, int) and not isinstance(default, bool):
            rng = ge(1) if default >= 1 else ge(0)
        check_value(f"{path}.{f.name}", value, rng, nullable=_nullable(type(options), f.name))


__all__ = ["COEFFICIENT_RANGES", "CONFIG_RANGES", "SOURCE_RANGES", "Range", "arg_type", "check_config",
           "check_source_options", "check_value", "ge", "gt"]
