"""Shared prompts computed once in the scoring forward (issue 15): a GRPO group's G rows and a
DPO pair's two rows repeat the same prompt; today's forward runs it once per row.

:func:`shared_prefix_context` splits each row at its first scored token into a *prefix* (the
real tokens before it: the prompt) and a *suffix* (the rest). Rows with equal prefixes share one
prefix forward; its KV cache is then gathered to one entry per row and the suffixes run on top
of it, with the positions and attention mask today's single forward would give them. Autograd
runs through the gather, so each prompt's gradient is the sum over its rows, as before: the
values and gradients are today's up to float rounding (float64 tests in
tests/test_policy_shared_prefix.py).

Work: ``P`` distinct prompts of length ``Lp`` and ``B`` suffixes of length ``Lc`` cost
``P*Lp + B*Lc`` tokens instead of ``B*(Lp + Lc)``.

Not covered (returns None, the caller runs its usual forward): batches where it would not send
fewer tokens through the body than the caller's way (``max_tokens``: suffixes of very different
lengths are padded to the longest, which length buckets avoid), layer types other than full or
sliding-window attention, a sliding window shorter than the padded prefix + suffix
(left-padding the prefixes shifts the window's token indices), rows without a scored token, and
batches where no two rows share a prefix. Wrapped models (DDP and friends must see their own
``forward``) are the caller's to keep away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache
from transformers.cache_utils import get_layer_types_and_kwargs

from expo_rl.policy.kv_cache import cache_kwarg
from expo_rl.policy.prompts import left_pad

if TYPE_CHECKING:
    from torch import nn


def _windows_allow(config: object, width: int) -> bool:
    """Only full / sliding layers, and every sliding window at least ``width`` tokens."""
    layer_types, layer_kwargs = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    for kind, kwargs in zip(layer_types, layer_kwargs):
        if kind == "sliding_attention":
            if kwargs["sliding_window"] < width:
                return False
        elif kind != "full_attention":
            return False
    return True


def shared_prefix_context(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          completion_mask: torch.Tensor, *, max_tokens: int | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, cols, [N,H] hidden state at t-1) of every scored position t, as
    ``logprobs._scored_context`` returns them, with each distinct prefix run once; None when not
    applicable (module docstring) or when its padded token count, ``P*Lp + B*Lc``, is not below
    ``max_tokens`` (the caller's cost of the other way). ``input_ids`` etc. are [B,T]; ``model``
    is a bare causal LM (or a PEFT model around one): the caller keeps wrapped models away."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else None
    if decoder is None or decoder is model:
        return None
    mask = attention_mask.bool()
    scored = completion_mask.bool() & mask
    scored[:, 0] = False
    if not bool(scored.any(-1).all()):
        return None
    start = scored.int().argmax(-1)  # [B] first scored column: the suffix starts there
    columns = torch.arange(input_ids.shape[1], device=input_ids.device)
    end = torch.where(mask, columns, -1).max(-1).values + 1  # [B] one past the last real token
    ids_rows, mask_rows, starts = input_ids.tolist(), mask.tolist(), start.tolist()
    prefixes = [tuple(t for t, m in zip(ids_rows[r][:starts[r]], mask_rows[r][:starts[r]]) if m)
                for r in range(len(ids_rows))]
    distinct = list(dict.fromkeys(prefixes))
    if len(distinct) == len(prefixes) or not all(distinct):
        return None
    owner = torch.tensor([distinct.index(p) for p in prefixes], device=input_ids.device)
    prefix_ids, prefix_mask = left_pad(distinct, 0, input_ids.device)  # pads are masked
    suffix_len = int((end - start).max())
    if max_tokens is not None and prefix_ids.numel() + len(prefixes) * suffix_len >= max_tokens:
        return None
    if not _windows_allow(model.config, prefix_ids.shape[1] + suffix_len):
        return None

    # suffix r = columns start[r] .. end[r] - 1 of row r, right-padded to suffix_len
    offsets = torch.arange(suffix_len, device=input_ids.device)
    suffix_cols = (start.unsqueeze(1) + offsets).clamp(max=input_ids.shape[1] - 1)
    inside = offsets < (end - start).unsqueeze(1)
    suffix_ids = input_ids.gather(1, suffix_cols)
    suffix_mask = attention_mask.gather(1, suffix_cols) * inside
    # today's positions: real tokens before the column (the prefix's, then the suffix's own)
    prefix_len = prefix_mask.sum(-1)[owner]
    suffix_positions = (prefix_len.unsqueeze(1) + suffix_mask.cumsum(-1) - 1).clamp(min=0)

    cache = DynamicCache(config=model.config)
    key = cache_kwarg(decoder)
    prefix_hidden = decoder(input_ids=prefix_ids, attention_mask=prefix_mask,
                            position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                            **{key: cache}).last_hidden_state  # [P, Lp, H]
    cache.batch_select_indices(owner)  # differentiable gather: one KV entry per row
    suffix_hidden = decoder(input_ids=suffix_ids, attention_mask=torch.cat([prefix_mask[owner], suffix_mask], 1),
                            position_ids=suffix_positions, use_cache=True, **{key: cache}).last_hidden_state
    # column j of `hidden` predicts suffix token j: the prefix's last state, then the suffix's
    hidden = torch.cat([prefix_hidden[owner, -1:], suffix_hidden], 1)  # [B, 1 + Lc, H]
    rows, cols = scored.nonzero(as_tuple=True)
    return rows, cols, hidden[rows, cols - start[rows]]
