"""Rollout engines (issue 12): who samples the on-policy completions. ``hf`` is the built-in
decode loop (``expo_rl.policy.sample``); ``vllm`` runs vLLM in-process next to the trainer and
receives the policy's weights after every optimiser step (see ``expo_rl.rollout.vllm``).

Layer: above ``expo_rl.policy`` (it imports it), below the recipes/runtime that choose one."""

from expo_rl.rollout.base import ENGINES, RolloutEngine, SamplingSettings, make_engine
from expo_rl.rollout.sync import WeightTracker

__all__ = ["ENGINES", "RolloutEngine", "SamplingSettings", "WeightTracker", "make_engine"]
