"""LoRA in the runtime (issue 12): the adapted policy, its reference, and merging a run's adapter.

With ``model.lora.r > 0`` the policy is the base model with peft LoRA adapters
(``expo_rl.policy.lora``); only the adapters train. The reference policy pi_ref is the initial
policy, which for LoRA (``B = 0`` at the start) is exactly the base model, so
:class:`BaseModelReference` computes reference log-probs on the policy module itself with the
adapters disabled, and no second frozen copy is held in memory. (A source that must *sample*
from the frozen policy, or an online source that refreshes the reference, still asks for a real
copy through ``__call__``; once it exists, it is the reference, which has the same weights.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from expo_rl.engine.config import LoraOptions
from expo_rl.engine.recipe import FrozenPolicy
from expo_rl.policy.lora import (
    ADAPTER_CONFIG,
    adapter_disabled,
    add_lora,
    merge_adapter_dir,
)


def wrap_lora(model: torch.nn.Module, options: LoraOptions) -> torch.nn.Module:
    """``model`` with adapters per ``options`` (``r > 0``)."""
    return add_lora(model, r=options.r, alpha=options.alpha, dropout=options.dropout,
                    target_modules=options.target_modules)


class BaseModelReference(FrozenPolicy):
    """pi_ref for a LoRA policy: the policy module with its adapters disabled (module doc)."""

    def __init__(self, policy: torch.nn.Module, load: Callable[[], torch.nn.Module], device: torch.device) -> None:
        super().__init__(load, device, eager=False)
        self.policy = policy

    @contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        copy = self.snapshot if self.snapshot is not None else self.model
        if copy is not None:  # a source asked for a real copy (same weights) or refreshed the reference
            yield copy
            return
        with adapter_disabled(self.policy) as base:
            was_training = base.training
            base.eval()
            try:
                yield base
            finally:
                base.train(was_training)


def merge_checkpoint(policy_dir: str | Path, base_spec: str, out_dir: str | Path) -> Path:
    """Write ``base_spec`` with the adapter in ``policy_dir`` merged, plus the tokenizer, to
    ``out_dir`` as a plain Hugging Face model. A full fine-tune's ``policy_dir`` is copied as is."""
    from expo_rl.policy import load_policy

    policy_dir, out_dir = Path(policy_dir), Path(out_dir)
    base, tokenizer = load_policy(base_spec)
    if (policy_dir / ADAPTER_CONFIG).is_file():
        model = merge_adapter_dir(base, policy_dir)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(policy_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir


__all__ = ["BaseModelReference", "merge_checkpoint", "wrap_lora"]
