"""Shared prompts computed once in the scoring forward (issue 15): a GRPO group's G rows and a
DPO pair's two rows repeat the same prompt; today's forward runs it once per row.

:func:`shared_prefix_context` splits each row at its first scored token into a *prefix* (the
real tokens before it: the prompt) and a *suffix* (the rest). Rows with equal prefixes share one
prefix forward; its KV cache is then gathered to one entry per row and the suffixes run on top
of it, with the positions and attention mask today's single forward would give them. Autograd
runs through the gather, so each prompt's gradient is the sum over its rows, as before: the
values and gradients are today's up to float rounding (float64 tests in
tests/test_policy_shared_prefix.py).

Work: ``P`` distinct prompts of length ``Lp`` and ``B`` suffixes cost ``P*Lp + sum_k b_k*L_k``
tokens instead of ``B*(Lp + Lc)``: the suffixes run in runs of similar length (:func:`suffix_pieces`;
``b_k`` rows padded to their longest, ``L_k``), each on its own gather of its rows' prefix keys
and values, so a DPO pair's short answer is not padded to a long one.

Not covered (returns None, the caller runs its usual forward): batches where it would not send
fewer tokens through the body than the caller's way (``max_tokens``), layer types other than
full or sliding-window attention, a sliding window shorter than the padded prefix + suffix
(left-padding the prefixes shifts the window's token indices), rows without a scored token, and
batches where no two rows share a prefix. Wrapped models (DDP and friends must see their own
``forward``) are the caller's to keep away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from transformers import DynamicCache

from expo_rl.policy.kv_cache import cache_kwarg, windows_cover
from expo_rl.policy.length_runs import cheapest_runs
from expo_rl.policy.prompts import left_pad

if TYPE_CHECKING:
    from torch import nn


def suffix_pieces(lengths: list[int], call_tokens: int, device: torch.device | str = "cpu"
                  ) -> list[tuple[torch.Tensor, int]]:
    """Rows (sorted by length) cut into runs that each pad to their own longest suffix:
    ``(row indices, width)`` minimising ``sum(rows x width) + call_tokens`` per run
    (``length_runs.cheapest_runs``, the cost model of ``logprobs.length_sub_batches``)."""
    _, runs = cheapest_runs([0] * len(lengths), lengths, call_tokens)
    return [(torch.tensor(run, dtype=torch.long, device=device), max(lengths[i] for i in run)) for run in runs]


def shared_prefix_context(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                          completion_mask: torch.Tensor, *, max_tokens: int | None = None,
                          call_tokens: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, cols, [N,H] hidden state at t-1) of every scored position t, as
    ``logprobs._scored_context`` returns them, with each distinct prefix run once; None when not
    applicable (module docstring) or when its padded token count plus ``call_tokens`` per suffix
    run is not below ``max_tokens`` (the caller's cost of the other way, counted alike).
    ``input_ids`` etc. are [B,T]; ``model`` is a bare causal LM (or a PEFT model around one): the
    caller keeps wrapped models away."""
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
    suffix_lens = end - start
    suffix_len = int(suffix_lens.max())
    pieces = suffix_pieces(suffix_lens.tolist(), call_tokens, input_ids.device)
    suffix_tokens = sum(len(index) * end_col + call_tokens for index, end_col in pieces)
    # the prefix call is not charged: measured on tiny:qwen2:20m (bench/shared_prefix.py, 16 rows of
    # 16 + 64 tokens) the shared path is 4-5% faster where charging it would turn it off
    if max_tokens is not None and prefix_ids.numel() + suffix_tokens >= max_tokens:
        return None
    if not windows_cover(model.config, prefix_ids.shape[1] + suffix_len):
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

    prefix_cache = DynamicCache(config=model.config)
    key = cache_kwarg(decoder)
    prefix_hidden = decoder(input_ids=prefix_ids, attention_mask=prefix_mask,
                            position_ids=(prefix_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
                            **{key: prefix_cache}).last_hidden_state  # [P, Lp, H]
    prefix_states = [(layer.keys, layer.values) for layer in prefix_cache.layers]
    rows_out, cols_out, context = [], [], []
    for index, end_col in pieces:
        prompt_of = owner[index]
        # a cache holding each row's prefix keys/values (a differentiable gather), the suffixes on top
        cache = DynamicCache(config=model.config)
        for layer_idx, (keys, values) in enumerate(prefix_states):
            cache.update(keys[prompt_of], values[prompt_of], layer_idx)
        suffix_hidden = decoder(input_ids=suffix_ids[index, :end_col],
                                attention_mask=torch.cat([prefix_mask[prompt_of], suffix_mask[index, :end_col]], 1),
                                position_ids=suffix_positions[index, :end_col], use_cache=True,
                                **{key: cache}).last_hidden_state
        # column j of `hidden` predicts suffix token j: the prefix's last state, then the suffix's
        hidden = torch.cat([prefix_hidden[prompt_of, -1:], suffix_hidden], 1)  # [b, 1 + end_col, H]
        local, cols = scored[index].nonzero(as_tuple=True)
        rows = index[local]
        rows_out.append(rows)
        cols_out.append(cols)
        context.append(hidden[local, cols - start[rows]])
    return torch.cat(rows_out), torch.cat(cols_out), torch.cat(context)
