"""A KV cache for the compact decode loop that writes in place instead of concatenating.

``transformers``' ``DynamicCache`` appends each step's keys and values with ``torch.cat``, which
copies the whole cache of every layer at every decode step (``O(length^2)`` bytes moved per
sequence); on CPU that copy is a sizeable share of the decode time of small models with many KV
heads (``bench/sampler.py`` compares both caches).
:class:`BlockKVCache` keeps each layer's keys and values in a buffer
``[rows, kv_heads, capacity, head_dim]`` and writes new tokens into it; attention reads a view of
the filled part. When the buffer is full it is reallocated at twice the needed size (capped at
the sequence's known maximum length), so each token is copied ``O(1)`` times on average and
memory stays within a factor 2 of what is used.

Rows leave the batch (``batch_select_indices``) by compacting the buffer in place; rows are
added (the n samples of a prompt after its prefill) by gathering into a new buffer.

Sliding-window layers return exactly what ``DynamicSlidingWindowLayer`` returns (the last
``window - 1`` cached tokens plus the new ones, with the same mask offset), so attention does
the same work; their buffer drops the tokens that fell out of the window whenever it is full.

Only full- and sliding-attention layers are covered; :func:`block_cache_supports` says whether
a model's layers all are (callers fall back to ``DynamicCache`` otherwise).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import torch
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs

if TYPE_CHECKING:
    from transformers import PretrainedConfig

SUPPORTED_LAYER_TYPES = ("full_attention", "sliding_attention")


def cache_kwarg(model: Any) -> str:
    """The forward's cache argument: ``cache`` (transformers >= 5.x) or ``past_key_values`` (older)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def block_cache_supports(config: PretrainedConfig) -> bool:
    """True when every decoder layer is full or sliding-window attention."""
    layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    return all(t in SUPPORTED_LAYER_TYPES for t in layer_types)


def windows_cover(config: PretrainedConfig, length: int) -> bool:
    """True when every decoder layer is full attention or a sliding window of at least ``length``
    tokens, i.e. attends to every one of a ``length``-token sequence (a window that short acts as
    full attention)."""
    layer_types, layer_kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    for kind, kwargs in zip(layer_types, layer_kwargs):
        if kind == "sliding_attention":
            if (kwargs.get("sliding_window") or 0) < length:
                return False
        elif kind != "full_attention":
            return False
    return True


class BlockKVLayer(DynamicLayer):
    """One layer's keys/values in a buffer written in place (see the module docstring).

    ``max_length`` bounds the tokens the layer will ever see (prompt width + new tokens), so no
    buffer is made longer than needed; ``sliding_window`` (None = full attention) limits what
    attention sees, as in ``DynamicSlidingWindowLayer``.
    """

    def __init__(self, max_length: int, sliding_window: int | None = None):
        super().__init__()
        self.max_length = max_length
        self.sliding_window = sliding_window
        self.is_sliding = sliding_window is not None
        self.seen = 0  # tokens cached so far (absolute)
        self.base = 0  # absolute position of buffer slot 0 (> 0 once a sliding layer dropped old tokens)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self._keys = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[-1]))
        self._values = value_states.new_empty((*value_states.shape[:2], 0, value_states.shape[-1]))
        self.rows = key_states.shape[0]
        self.is_initialized = True

    def _visible_start(self) -> int:
        """Absolute position of the first cached token attention sees (HF's sliding rule: the last window - 1)."""
        if self.sliding_window is None:
            return 0
        return max(self.seen - self.sliding_window + 1, 0)

    def _reallocate(self, needed_end: int) -> None:
        """New buffer holding the still-needed tokens with room up to at least ``needed_end``."""
        new_base = self._visible_start()
        needed = needed_end - new_base
        capacity = min(2 * needed, self.max_length - new_base)
        if self.sliding_window is not None:
            capacity = min(capacity, 2 * self.sliding_window)
        capacity = max(capacity, needed)
        keep = slice(new_base - self.base, self.seen - self.base)
        rows = self.rows
        keys = self._keys.new_empty((rows, self._keys.shape[1], capacity, self._keys.shape[-1]))
        values = self._values.new_empty((rows, self._values.shape[1], capacity, self._values.shape[-1]))
        kept = self.seen - new_base
        keys[:, :, :kept] = self._keys[:rows, :, keep]
        values[:, :, :kept] = self._values[:rows, :, keep]
        self._keys, self._values, self.base = keys, values, new_base

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new ``[rows, heads, q, dim]`` states in place; return the visible keys and values."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        visible_start = self._visible_start()  # computed before this update, as HF's mask sizes are
        end = self.seen + key_states.shape[-2]
        if end - self.base > self._keys.shape[2]:
            self._reallocate(end)
        self._keys[:self.rows, :, self.seen - self.base:end - self.base] = key_states
        self._values[:self.rows, :, self.seen - self.base:end - self.base] = value_states
        self.seen = end
        visible = slice(visible_start - self.base, end - self.base)
        self.keys, self.values = self._keys[:self.rows, :, visible], self._values[:self.rows, :, visible]
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """(kv_length, kv_offset) of the states the next ``update`` returns, as in HF's dynamic layers."""
        start = self._visible_start()
        return self.seen - start + query_length, start

    def get_seq_length(self) -> int:
        return self.seen

    def get_max_length(self) -> int:
        return self.max_length if self.sliding_window is None else self.sliding_window

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (in that order; repeats allowed) of the cache."""
        if not self.is_initialized:
            return
        used = slice(0, self.seen - self.base)
        if len(indices) > self._keys.shape[0]:  # more rows than the buffer holds: gather into a new one
            self._keys = self._keys[indices]
            self._values = self._values[indices]
        else:  # compact in place; the right-hand side is a gathered copy, so overlapping rows are safe
            self._keys[:len(indices), :, used] = self._keys[indices, :, used]
            self._values[:len(indices), :, used] = self._values[indices, :, used]
        self.rows = len(indices)
        self.keys, self.values = self._keys[:self.rows], self._values[:self.rows]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self.batch_select_indices(torch.arange(self.rows, device=self.device).repeat_interleave(repeats))

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("BlockKVLayer does not support crop (the sampler never calls it)")

    def reset(self) -> None:
        self.keys = self.values = None
        self.seen = self.base = 0
        self.is_initialized = False


class BlockKVCache(Cache):
    """A cache of :class:`BlockKVLayer` s shaped by the model's config (full and sliding layers)."""

    def __init__(self, config: PretrainedConfig, max_length: int):
        layer_types, layer_kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        unsupported = sorted({t for t in layer_types if t not in SUPPORTED_LAYER_TYPES})
        if unsupported:
            raise ValueError(f"BlockKVCache: unsupported layer types {unsupported}; use DynamicCache")
        layers = [BlockKVLayer(max_length, kwargs.get("sliding_window") if kind == "sliding_attention" else None)
                  for kind, kwargs in zip(layer_types, layer_kwargs)]
        super().__init__(layers=layers)
