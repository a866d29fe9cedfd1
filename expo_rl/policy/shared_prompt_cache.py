"""A KV cache whose prompt part is stored once per prompt and read once per group of samples.

The compact decode loop (``expo_rl.policy.sampling``) draws ``n`` samples of each prompt. With
:class:`~expo_rl.policy.kv_cache.BlockKVCache` the prompt's keys and values are copied to each
of the n rows after the prefill, and every decode step reads each copy: on CPU that read is
what attention's time goes to (``docs/notes/issue15-perf.md``). Here a layer keeps

* the prompt's keys/values ``[prompts, kv_heads, width, d]`` (left padded, as prefilled), once, and
* each row's generated keys/values in a :class:`BlockKVLayer` buffer ``[rows, kv_heads, t, d]``,

and :func:`shared_prompt_attention` computes a decode step's attention in two parts merged by
their log-sum-exp (the split used by FlashAttention's and flash-decoding's block-wise softmax):

    o_p, lse_p = attn(q, K_prompt, V_prompt)          all live samples of a prompt as one query block
    o_c, lse_c = attn(q, K_completion, V_completion)  per row
    lse = logaddexp(lse_p, lse_c);  o = exp(lse_p - lse) o_p + exp(lse_c - lse) o_c

which equals softmax over the concatenated keys (same values up to float rounding; tests compare
logits with ``DynamicCache`` step by step). The samples of one prompt are stacked as that
prompt's query block (their grouped-query heads too), so its keys/values are read once per step
instead of once per sample.

Scope: CPU (the parts use torch's CPU flash-attention kernel, which returns the log-sum-exp),
``sdpa`` models whose layers are all full attention, or sliding-window layers whose window covers
the whole sequence (prompt width + new tokens; then they attend to everything, like full
attention). :func:`shared_prompt_supports` says whether a model and length qualify; the sampler
falls back to ``BlockKVCache`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, get_layer_types_and_kwargs
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from expo_rl.policy.kv_cache import BlockKVLayer, windows_cover

if TYPE_CHECKING:
    from transformers import PretrainedConfig

SHARED_PROMPT_ATTENTION = "expo_rl_shared_prompt"
CACHE_KWARG = "shared_prompt_cache"  # the forward kwarg that carries the cache to the attention function
_flash_with_lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu  # returns (output, logsumexp)


def shared_prompt_supports(model: Any, total_length: int) -> bool:
    """True when :class:`SharedPromptKVCache` gives the model's exact attention (module docstring)."""
    config = model.config
    if next(model.parameters()).device.type != "cpu" or config._attn_implementation != "sdpa":
        return False
    if config.get_text_config(decoder=True) is not config:  # a composite model: its attention reads a sub-config
        return False
    return windows_cover(config, total_length)


class SharedPromptKVLayer(BlockKVLayer):
    """Prompt keys/values once per prompt (set by the prefill); generated ones per row (the base class)."""

    def __init__(self, max_new_tokens: int):
        super().__init__(max_new_tokens)
        self.prompt_keys: torch.Tensor | None = None
        self.prompt_values: torch.Tensor | None = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.prompt_keys is None:  # the prefill: one row per distinct prompt
            self.prompt_keys, self.prompt_values = key_states, value_states
            return key_states, value_states
        return super().update(key_states, value_states)

    def prompt_width(self) -> int:
        return 0 if self.prompt_keys is None else self.prompt_keys.shape[2]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.prompt_width() + self.seen + query_length, 0

    def get_seq_length(self) -> int:
        return self.prompt_width() + self.seen

    def select_prompts(self, indices: torch.Tensor) -> None:
        self.prompt_keys, self.prompt_values = self.prompt_keys[indices], self.prompt_values[indices]


class SharedPromptKVCache(Cache):
    """Per layer a :class:`SharedPromptKVLayer`; tracks which prompt each live row samples.

    ``start_rows(prompt_of_row, prompt_mask)`` after the prefill (rows of a prompt consecutive),
    then ``batch_select_indices`` as rows finish (prompts with no live row left are dropped).
    """

    def __init__(self, config: PretrainedConfig, max_new_tokens: int):
        layer_types, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
        super().__init__(layers=[SharedPromptKVLayer(max_new_tokens) for _ in layer_types])
        self.prompt_of_row: torch.Tensor | None = None
        self.slot_of_row: torch.Tensor | None = None
        self.max_rows_per_prompt = 0
        self.prompt_bias: torch.Tensor | None = None  # [prompts, 1, 1, width]: 0 or -inf (left padding)

    def start_rows(self, prompt_of_row: torch.Tensor, prompt_mask: torch.Tensor) -> None:
        """Row ``r`` samples prompt ``prompt_of_row[r]`` (non-decreasing); ``prompt_mask`` [prompts, width]."""
        self.prompt_bias = torch.zeros(prompt_mask.shape, device=prompt_mask.device).masked_fill(
            prompt_mask == 0, float("-inf"))
        self.prompt_bias = self.prompt_bias[:, None, None, :]
        self._set_rows(prompt_of_row)

    def _set_rows(self, prompt_of_row: torch.Tensor) -> None:
        live, prompt_of_row, rows_per_prompt = torch.unique_consecutive(
            prompt_of_row, return_inverse=True, return_counts=True)
        if len(live) < self.layers[0].prompt_keys.shape[0]:  # drop prompts whose samples all finished
            for layer in self.layers:
                layer.select_prompts(live)
            self.prompt_bias = self.prompt_bias[live]
        first_row = torch.cumsum(rows_per_prompt, 0) - rows_per_prompt
        self.prompt_of_row = prompt_of_row
        self.slot_of_row = torch.arange(len(prompt_of_row), device=prompt_of_row.device) - first_row[prompt_of_row]
        self.max_rows_per_prompt = int(rows_per_prompt.max())

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows ``indices`` (increasing) of the generated part and re-index their prompts."""
        for layer in self.layers:
            layer.batch_select_indices(indices)
        self._set_rows(self.prompt_of_row[indices])

    def attend(self, layer_idx: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               scale: float) -> torch.Tensor:
        """One decode step's attention ``[rows, 1, heads, d]`` of ``query`` [rows, heads, 1, d]; ``key``/``value``
        are the rows' generated keys/values (this step's included), the prompt part comes from the layer."""
        layer = self.layers[layer_idx]
        rows, heads, _, dim = query.shape
        prompts, kv_heads = layer.prompt_keys.shape[:2]
        per_kv = heads // kv_heads
        # under CPU autocast sdpa runs in the autocast dtype (its inputs can differ: RoPE upcasts q and k)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else query.dtype
        query, key, value = query.to(dtype), key.to(dtype), value.to(dtype)
        prompt_keys, prompt_values = layer.prompt_keys.to(dtype), layer.prompt_values.to(dtype)
        packed = query.reshape(rows, kv_heads, per_kv, dim)
        # each prompt's live rows as one query block [prompts, kv_heads, max_rows * per_kv, d] (unused slots 0)
        block = packed.new_zeros(prompts, self.max_rows_per_prompt, kv_heads, per_kv, dim)
        block[self.prompt_of_row, self.slot_of_row] = packed
        block = block.transpose(1, 2).reshape(prompts, kv_heads, -1, dim)
        out_p, lse_p = _flash_with_lse(block, prompt_keys, prompt_values, attn_mask=self.prompt_bias.to(dtype),
                                       scale=scale)
        out_p = out_p.view(prompts, kv_heads, -1, per_kv, dim).transpose(1, 2)[self.prompt_of_row, self.slot_of_row]
        lse_p = lse_p.view(prompts, kv_heads, -1, per_kv).transpose(1, 2)[self.prompt_of_row, self.slot_of_row]
        out_c, lse_c = _flash_with_lse(packed, key, value, scale=scale)
        lse = torch.logaddexp(lse_p, lse_c).unsqueeze(-1)
        out = out_p.float() * torch.exp(lse_p.unsqueeze(-1) - lse) + out_c.float() * torch.exp(lse_c.unsqueeze(-1) - lse)
        return out.to(query.dtype).reshape(rows, 1, heads, dim)


def shared_prompt_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, dropout: float = 0.0,
                            scaling: float | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Decode steps with a :class:`SharedPromptKVCache` in ``kwargs``: its two-part attention (the
    cache holds the masks); everything else (the prefill): transformers' ``sdpa_attention_forward``."""
    cache = kwargs.pop(CACHE_KWARG, None)
    if cache is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    return cache.attend(module.layer_idx, query, key, value, scale), None


AttentionInterface.register(SHARED_PROMPT_ATTENTION, shared_prompt_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(SHARED_PROMPT_ATTENTION, sdpa_mask)


@contextmanager
def shared_prompt_attention_enabled(model: Any) -> Iterator[None]:
    """Within the block the model (an ``sdpa`` one) routes attention through :func:`shared_prompt_attention`."""
    before = model.config._attn_implementation
    model.config._attn_implementation = SHARED_PROMPT_ATTENTION
    try:
        yield
    finally:
        model.config._attn_implementation = before
