"""Token positions a side's model computes, counted where every position enters the model.

The useful tokens of a step (distinct prompt tokens + completion tokens, ``bench/report.py``) are
the same on both sides; what differs is how many positions each side pushes through the model to
process them: padding to the longest row, a prompt repeated once per DPO response or per GRPO
sample, a prompt prefilled once per sample in generation, the reference forward. Every one of
those positions is looked up in the token embedding once per forward (training, reference and
generation; a decoding step looks up one position per row), so counting the ids that go through
``nn.Embedding`` tables of a vocabulary's size counts them all, on both sides, without touching
either side's code. Written by hand: profilers count FLOPs or time, not positions.
"""

from __future__ import annotations

from typing import Any

MIN_VOCAB = 256  # smaller embedding tables (none in the benchmark's models) are not token embeddings


class TokenMeter:
    """``install()`` once; ``mark()`` at each step end gives that step's computed positions."""

    def __init__(self) -> None:
        self.count = 0
        self._marked = 0
        self.per_step: list[int] = []

    def install(self) -> None:
        import torch

        original = torch.nn.Embedding.forward
        meter = self

        def counting_forward(module: torch.nn.Embedding, input: Any) -> Any:
            if module.num_embeddings >= MIN_VOCAB:
                meter.count += input.numel()
            return original(module, input)

        torch.nn.Embedding.forward = counting_forward

    def reset(self) -> None:
        """Forget what was counted before the first step (model loading, warm-up calls)."""
        self._marked = self.count

    def mark(self) -> None:
        self.per_step.append(self.count - self._marked)
        self._marked = self.count
