"""Masked helpers: hand-checked numbers and loop-vs-vectorised group statistics."""

import math

import torch

from expo_rl.core.masked import (
    dense_ids,
    group_all_equal,
    group_mean_std,
    group_sizes,
    last_token_index,
    masked_mean,
    masked_sum,
    sequence_mean,
    whiten,
)

X = torch.tensor([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]])
M = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])


def test_masked_sum_and_mean():
    assert masked_sum(X, M).item() == 5.0           # 2 + 3
    assert masked_mean(X, M).item() == 2.5          # (2 + 3) / 2 selected
    # per row: row 0 -> 2.5, row 1 selects nothing -> 0 (not NaN)
    assert sequence_mean(X, M).tolist() == [2.5, 0.0]
    assert masked_sum(X, M, dim=-1).tolist() == [5.0, 0.0]


def test_last_token_index():
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    assert last_token_index(mask).tolist() == [2, 0, -1]


def test_dense_ids_singletons():
    ids, k = dense_ids(torch.tensor([5, -1, 5, 2, -1]))
    # groups: {5: rows 0,2}, {2: row 3}, and each -1 row alone -> 4 groups
    assert k == 4
    assert ids[0] == ids[2] and len({ids[1].item(), ids[4].item(), ids[0].item(), ids[3].item()}) == 4
    assert group_sizes(torch.tensor([5, -1, 5, 2, -1])).tolist() == [2, 1, 2, 1, 1]


def test_group_mean_std_hand_numbers():
    values = torch.tensor([1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 7.0])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, -1])
    mean, std = group_mean_std(values, groups)
    # group 0: mean 0.5; squared deviations 4 * 0.25 = 1, unbiased var 1/3
    assert torch.allclose(mean[:4], torch.full((4,), 0.5))
    assert torch.allclose(std[:4], torch.full((4,), math.sqrt(1 / 3)))
    # group 1: equal values -> std 0; the lone row: its own mean, std 0
    assert mean[4:].tolist() == [3.0, 3.0, 7.0] and std[4:].tolist() == [0.0, 0.0, 0.0]
    _, biased = group_mean_std(values, groups, unbiased=False)
    assert torch.allclose(biased[:4], torch.full((4,), 0.5))  # sqrt(1/4)
    assert group_all_equal(values, groups).tolist() == [False] * 4 + [True] * 3


def test_group_stats_loop_vs_vectorised():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(40, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 7, (40,), generator=gen)
    mean, std = group_mean_std(values, groups)
    for g in groups.unique():
        rows = groups == g
        expected_std = values[rows].std() if rows.sum() > 1 else torch.tensor(0.0, dtype=torch.float64)
        assert torch.allclose(mean[rows], values[rows].mean().expand(int(rows.sum())))
        assert torch.allclose(std[rows], expected_std.expand(int(rows.sum())))


def test_whiten():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = whiten(x, mask)
    # over {1, 2, 3}: mean 2, biased var 2/3 -> (x - 2) / sqrt(2/3); the masked-out 100 -> 0
    assert torch.allclose(out, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]) / math.sqrt(2 / 3), atol=1e-6)
    kept = whiten(x, mask, shift_mean=False)
    assert torch.allclose(masked_mean(kept, mask), torch.tensor(2.0), atol=1e-6)
