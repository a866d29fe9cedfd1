"""Which of the policy's weights changed since the rollout engine last received them.

Every in-place update of a tensor (``optimizer.step``, ``load_state_dict``) increments its
version counter (``tensor._version``), so comparing ``(id, _version)`` per parameter with the
values recorded at the last sync finds exactly the tensors the trainer has written since, at no
cost (no copy, no comparison of values). A tensor that was replaced (a new object) counts as
changed. With LoRA the engine holds merged weights, so a changed adapter (``lora_A``/``lora_B``)
marks its merged base weight as changed, and the merged tensors are computed for those only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from expo_rl.policy.logprobs import unwrap
from expo_rl.policy.lora import adapter_groups, base_parameter_name, is_lora, merged_named_weights


def _versions(model: Any) -> dict[str, tuple[int, int]]:
    return {name: (id(p), p._version) for name, p in unwrap(model).named_parameters()}


class WeightTracker:
    """``changed(model)``: (name, tensor) of the weights written since the last ``changed`` call
    (or since construction), under the base model's Hugging Face names; LoRA layers merged."""

    def __init__(self, model: Any) -> None:
        self._seen = _versions(model)

    def changed(self, model: Any) -> Iterator[tuple[str, torch.Tensor]]:
        now = _versions(model)
        dirty = {name for name, version in now.items() if self._seen.get(name) != version}
        self._seen = now
        if not dirty:
            return iter(())
        if not is_lora(model):
            params = dict(unwrap(model).named_parameters())
            return ((name, params[name].detach()) for name in sorted(dirty))
        groups = adapter_groups(model)
        names = {merged for merged, adapters in groups.items() if dirty.intersection(adapters)}
        names |= {base_parameter_name(n) for n in dirty if ".lora_" not in n}
        return merged_named_weights(model, only=names)


__all__ = ["WeightTracker"]
