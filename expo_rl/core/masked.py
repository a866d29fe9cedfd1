"""Masked-tensor helpers shared by advantages, coefficients and the loss aggregation.

All functions are pure and shape-preserving where stated. A ``mask`` is any tensor broadcastable
to ``x`` whose non-zero entries mark the positions that count (completion tokens); it is cast to
``x``'s dtype, so bool, int and float masks all work. Empty selections give 0, never NaN.
"""

from __future__ import annotations

import torch


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x * mask)`` over ``dim`` (all dims when None)."""
    masked = x * mask.to(x.dtype)
    return masked.sum() if dim is None else masked.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """``sum(x * mask) / sum(mask)`` over ``dim``; 0 where the mask selects nothing."""
    m = mask.to(x.dtype)
    total = (x * m).sum() if dim is None else (x * m).sum(dim)
    count = m.expand_as(x).sum() if dim is None else m.expand_as(x).sum(dim)
    return total / count.clamp(min=1)


def sequence_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean over the masked positions: ``(1/|o_i|) sum_t x[i, t]``.

    x, mask: [B, T] -> [B]; rows without masked positions give 0.
    """
    return masked_mean(x, mask, dim=-1)


def sequence_lengths(mask: torch.Tensor) -> torch.Tensor:
    """``|o_i|``, the number of masked positions per row: [B, T] -> [B] (long)."""
    return mask.to(torch.long).sum(-1)


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last masked position per row, [B, T] -> [B] (long); -1 for empty rows."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)
    return torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(-1).values


def dense_ids(index: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Relabel ids to 0..K-1 in order of value; negative ids (``-1`` = "no group") become
    singleton ids of their own.

    index: [N] long -> (ids [N] long, K).
    """
    index = index.to(torch.long)
    if index.numel() == 0:
        return index, 0
    singles = index < 0
    # give every ungrouped row a fresh id above all real ids, so it forms a group of one
    fresh = index.max().clamp(min=-1) + 1 + torch.arange(index.numel(), device=index.device)
    keyed = torch.where(singles, fresh, index)
    unique, ids = torch.unique(keyed, return_inverse=True)
    return ids, int(unique.numel())


def group_sizes(group_index: torch.Tensor) -> torch.Tensor:
    """Size of each row's group, [N] -> [N] (long); rows with a negative id are groups of one."""
    ids, k = dense_ids(group_index)
    counts = torch.zeros(k, dtype=torch.long, device=ids.device).scatter_add_(0, ids, torch.ones_like(ids))
    return counts[ids]


def group_mean_std(values: torch.Tensor, group_index: torch.Tensor, *,
                   unbiased: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of ``values`` within each group, broadcast back to the rows.

    values: [N] float, group_index: [N] long (rows sharing an id form a group; negative ids are
    groups of one). Returns (mean [N], std [N]). ``unbiased`` uses the 1/(n-1) estimator (as
    ``torch.std``, TRL and verl do for GRPO); a group of one has std 0.
    """
    ids, k = dense_ids(group_index)
    zeros = torch.zeros(k, dtype=values.dtype, device=values.device)
    count = zeros.scatter_add(0, ids, torch.ones_like(values))
    mean = zeros.scatter_add(0, ids, values) / count
    centred = values - mean[ids]
    square = zeros.scatter_add(0, ids, centred * centred)
    dof = (count - 1).clamp(min=1) if unbiased else count
    std = torch.where(count > 1, (square / dof).sqrt(), zeros)
    return mean[ids], std[ids]


def group_all_equal(values: torch.Tensor, group_index: torch.Tensor) -> torch.Tensor:
    """True for the rows of groups whose values are all exactly equal, [N] -> [N] bool.

    Exact equality (max == min), not a float tolerance on the std: equal rewards must give
    exactly zero advantages.
    """
    ids, k = dense_ids(group_index)
    high = torch.full((k,), -torch.inf, dtype=values.dtype, device=values.device)
    low = torch.full((k,), torch.inf, dtype=values.dtype, device=values.device)
    high = high.scatter_reduce(0, ids, values, reduce="amax")
    low = low.scatter_reduce(0, ids, values, reduce="amin")
    return (high == low)[ids]


def whiten(x: torch.Tensor, mask: torch.Tensor, *, shift_mean: bool = True,
           eps: float = 1e-8) -> torch.Tensor:
    """``(x - mean) / sqrt(var + eps)`` over the masked positions (mean kept when
    ``shift_mean`` is False); masked-out positions are returned as 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)
