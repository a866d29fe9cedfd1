"""One interface for rollout engines: ``engine.sample(model, prompts, n=, seed=) -> SampleBatch``.

``model`` is the current policy (the trainer's module, unwrapped for generation). An engine that
keeps its own copy of the weights (vLLM) first brings that copy up to date with ``model``, then
samples; the returned :class:`~expo_rl.policy.SampleBatch` has the same layout whatever the
engine (prompt-major, EOS kept, no padding) and, when the engine reports them, ``logprobs``: the
sampler's own log-probability of each completion token (used to measure the sampler/trainer
mismatch and for truncated importance sampling, ``expo_rl.core.mismatch``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from expo_rl.policy import SampleBatch

ENGINES = ("hf", "vllm")


@dataclass(frozen=True)
class SamplingSettings:
    """The run's sampling settings (plain values; ``expo_rl.engine.config.SamplingConfig`` holds them)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    batch_size: int | None = None
    draw: str = "multinomial"
    stop_ids: tuple[int, ...] = ()  # extra stop tokens, ended on like EOS (sampling.stop)


class RolloutEngine(Protocol):
    name: str

    def sample(self, model: Any, prompts: list[str], *, n: int, seed: int | None) -> SampleBatch: ...

    def stats(self) -> dict[str, float]:
        """Counters since the last call (e.g. weight-sync seconds and tensors sent); resets them."""
        ...


__all__ = ["ENGINES", "RolloutEngine", "SamplingSettings"]
