"""The generic config walker: YAML/--set values -> dataclasses, with errors that name the key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from expo_rl.engine.typed_config import (
    ConfigError,
    apply_override,
    from_dict,
    parse_override,
    to_dict,
)


@dataclass
class Inner:
    lr: float = 1e-3
    schedule: Literal["cosine", "constant"] = "cosine"
    clip: float | None = 1.0


@dataclass
class Item:
    name: str
    weight: float = 1.0


@dataclass
class Outer:
    steps: int = 3
    flag: bool = False
    levels: list[int] | None = None
    betas: tuple[float, float] = (0.9, 0.99)
    inner: Inner = field(default_factory=Inner)
    items: list[Item] = field(default_factory=list)
    kind: str = field(default="a", metadata={"choices": lambda: ["a", "b"]})


def test_round_trip_and_coercions():
    cfg = from_dict(Outer, {"steps": 5, "inner": {"lr": "1e-5", "clip": None}, "levels": [1, 2],
                            "betas": [0.8, 1], "items": [{"name": "x"}]})
    assert cfg.steps == 5 and cfg.inner.lr == 1e-5 and cfg.inner.clip is None
    assert cfg.betas == (0.8, 1.0) and cfg.items[0] == Item("x", 1.0)
    assert from_dict(Outer, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, fragments", [
    ({"inner": {"lrr": 1}}, ["unknown key 'inner.lrr'", "valid keys under 'inner': lr, schedule, clip",
                             "did you mean 'lr'"]),
    ({"stepz": 1}, ["unknown key 'stepz'", "steps, flag"]),
    ({"inner": {"schedule": "cosin"}}, ["'inner.schedule'", "allowed values: cosine, constant"]),
    ({"steps": "three"}, ["'steps'", "expected int", "three"]),
    ({"steps": 2.5}, ["'steps'", "expected int"]),
    ({"flag": "yes"}, ["'flag'", "expected bool"]),
    ({"inner": {"lr": "fast"}}, ["'inner.lr'", "expected float"]),
    ({"items": [{"weight": 2}]}, ["'items.0.name' is required"]),
    ({"items": [{"name": "x", "weight": "w"}]}, ["'items.0.weight'", "expected float"]),
    ({"kind": "c"}, ["'kind'", "allowed values: a, b"]),
    ({"levels": 3}, ["'levels'", "expected a list"]),
])
def test_errors_name_key_and_allowed_values(data, fragments):
    with pytest.raises(ConfigError) as error:
        from_dict(Outer, data)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_overrides_are_typed_and_dotted():
    data = {"inner": {"lr": 0.1}, "items": [{"name": "x"}]}
    for text in ["inner.lr=1e-4", "steps=7", "flag=true", "levels=[1, 3]", "items.0.weight=0.5",
                 "inner.clip=null"]:
        apply_override(data, *parse_override(text))
    cfg = from_dict(Outer, data)
    assert (cfg.inner.lr, cfg.steps, cfg.flag, cfg.levels) == (1e-4, 7, True, [1, 3])
    assert cfg.items[0].weight == 0.5 and cfg.inner.clip is None
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("steps")
    with pytest.raises(ConfigError, match="index 0..0"):
        apply_override(data, *parse_override("items.3.weight=1"))


def test_unquoted_yaml_no_selects_the_literal_string_it_spells():
    """`--set train.mixed_precision=no` (YAML 1.1 reads `no` as false) means the option "no"."""
    from expo_rl.engine.config import load_config

    assert load_config("grpo", ["train.mixed_precision=no"]).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match="allowed values: cosine, constant"):
        from_dict(Outer, {"inner": {"schedule": False}})  # no option spelled no/off/false
