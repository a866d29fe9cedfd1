"""One registry type: every name -> entry table raises the same error, listing the names, and
nothing is registered by importing a higher layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from expo_rl.core.coefficients import COEFFICIENTS, get_coefficient
from expo_rl.demo.budgets import get_budget
from expo_rl.expo.answer_format import get_answer_format
from expo_rl.expo.hints import get_hint_source
from expo_rl.registry import Registry, UnknownNameError
from expo_rl.sources import get_source
from expo_rl.verify import get_reward


@pytest.mark.parametrize("get, kind, known", [
    (get_coefficient, "gradient coefficient", "grpo"),
    (get_source, "data source", "on_policy"),
    (get_reward, "reward", "correctness"),
    (get_hint_source, "hint source", "answer"),
    (get_answer_format, "answer format", "boxed"),
    (get_budget, "demo budget", "quick"),
])
def test_every_registry_raises_one_error_listing_the_names(get, kind, known) -> None:
    assert get(known) is not None
    with pytest.raises(UnknownNameError, match=f"unknown {kind} 'nope'; allowed: .*{known}") as error:
        get("nope")
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_registry_mapping_and_duplicates() -> None:
    things: Registry[int] = Registry("thing", hint=" (or a number)")
    things.register("a")(1)
    things["b"] = 2
    assert dict(things) == {"a": 1, "b": 2} and "a" in things and things.get("c", 0) == 0
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        things.add("a", 3)
    assert things.pop("b") == 2
    with pytest.raises(KeyError, match=r"unknown thing 'b'; allowed: a \(or a number\)"):
        things["b"]


def test_exp_sft_is_registered_with_the_core_coefficients() -> None:
    """No import side effect: the core registry has exp_sft without importing expo or sources."""
    code = ("import sys; from expo_rl.core.coefficients import COEFFICIENTS; "
            "assert 'exp_sft' in COEFFICIENTS and 'sft' in COEFFICIENTS; "
            "assert not any(m.startswith(('expo_rl.expo', 'expo_rl.sources')) for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert COEFFICIENTS.get("exp_sft").__module__ == "expo_rl.core.coefficients"
