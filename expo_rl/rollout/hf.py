"""The ``hf`` rollout engine: the built-in decode loop (``expo_rl.policy.sample``) on the policy module itself."""

from __future__ import annotations

from typing import Any

import torch

from expo_rl.policy import SampleBatch, sample
from expo_rl.rollout.base import SamplingSettings


class HFEngine:
    """Samples with the trainer's own module (no weight copy, so nothing to sync); no log-probs."""

    name = "hf"

    def __init__(self, tokenizer: Any, settings: SamplingSettings) -> None:
        self.tokenizer, self.settings = tokenizer, settings

    def sample(self, model: Any, prompts: list[str], *, n: int, seed: int | None) -> SampleBatch:
        s = self.settings
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return sample(model, self.tokenizer, prompts, n=n, temperature=s.temperature, top_p=s.top_p,
                              max_new_tokens=s.max_new_tokens, seed=seed, batch_size=s.batch_size, draw=s.draw,
                              stop_ids=s.stop_ids)
        finally:
            model.train(was_training)

    def stats(self) -> dict[str, float]:
        return {}
