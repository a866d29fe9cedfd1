"""Advantages: hand-derived GRPO and GAE numbers, the std = 0 guard, loop-vs-vectorised GAE."""

import math

import pytest
import torch

from expo_rl.core.advantages import gae, group_advantages, kl_penalised_rewards


def test_group_advantages_hand_numbers():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.5])
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, -1])
    out = group_advantages(rewards, groups)
    # group 0: mean 0.5, unbiased std sqrt(1/3) -> +-0.5 / sqrt(1/3) = +-sqrt(3)/2
    a = math.sqrt(3) / 2
    assert torch.allclose(out.advantages[:4], torch.tensor([a, -a, -a, a]))
    # group 1 all right, group 2 all wrong: std 0 -> exactly 0 (no NaN), both zero-signal
    assert out.advantages[4:9].tolist() == [0.0] * 5
    # the ungrouped row is a group of one: advantage 0, and not counted as a group
    assert out.advantages[9].item() == 0.0
    assert out.num_groups == 3 and out.num_zero_signal_groups == 2
    assert out.zero_signal.tolist() == [False] * 4 + [True] * 5 + [False]


def test_dr_grpo_skips_the_std():
    out = group_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0, 0, 0, 0]), scale_by_std=False)
    # mean 0.25: r - mean
    assert torch.allclose(out.advantages, torch.tensor([0.75, -0.25, -0.25, -0.25]))


def test_equal_non_binary_rewards_give_exact_zero():
    # 0.1 three times: the float mean is not exactly 0.1, a tolerance-free guard must still give 0
    out = group_advantages(torch.tensor([0.1, 0.1, 0.1]), torch.tensor([4, 4, 4]))
    assert out.advantages.tolist() == [0.0, 0.0, 0.0] and out.num_zero_signal_groups == 1


def test_kl_penalised_rewards_hand_numbers():
    # row 0: prompt at position 0, completion at 1..3, padding at 4
    mask = torch.tensor([[0, 1, 1, 1, 0]])
    old = torch.tensor([[0.0, -1.0, -2.0, -1.0, 0.0]])
    ref = torch.tensor([[0.0, -1.5, -1.0, -1.0, 0.0]])
    out = kl_penalised_rewards(torch.tensor([1.0]), old, ref, mask, kl_beta=0.1)
    # -0.1 * (old - ref) = -0.1 * [0.5, -1, 0] = [-0.05, 0.1, 0]; outcome 1 on the last token (pos 3)
    assert torch.allclose(out, torch.tensor([[0.0, -0.05, 0.1, 1.0, 0.0]]))
    assert torch.equal(kl_penalised_rewards(torch.tensor([2.0]), old, None, mask, kl_beta=0.0),
                       torch.tensor([[0.0, 0.0, 0.0, 2.0, 0.0]]))
    with pytest.raises(ValueError, match="reference"):
        kl_penalised_rewards(torch.tensor([1.0]), old, None, mask, kl_beta=0.1)


def test_gae_hand_numbers():
    mask = torch.tensor([[1, 1, 1, 1, 0]])  # position 0 is the prompt, 4 is padding; see below
    mask[0, 0] = 0
    rewards = torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[9.0, 0.5, 0.5, 0.5, 9.0]])  # the 9s are off the mask and must not leak
    # gamma = lambda = 1: A_t = (sum of future rewards) - V_t = 1 - 0.5 for every token
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.0, 0.5, 0.5, 0.5, 0.0]]))
    assert torch.allclose(ret, torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]]))  # returns = A + V
    # lambda = 0: A_t = delta_t = r_t + V_{t+1} - V_t: 0, 0, then 1 + 0 (after the end) - 0.5
    adv, _ = gae(rewards, values, mask, gamma=1.0, lam=0.0)
    assert torch.allclose(adv, torch.tensor([[0.0, 0.0, 0.0, 0.5, 0.0]]))
    # gamma = 0.5, lambda = 1: discounted returns G = 0.25, 0.5, 1 minus V = 0.5
    adv, _ = gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert torch.allclose(adv, torch.tensor([[0.0, -0.25, 0.0, 0.5, 0.0]]))


def _gae_loop(rewards, values, gamma, lam):
    """Textbook GAE on one completion (plain Python lists)."""
    out, running, next_value = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_value - values[t]
        running = delta + gamma * lam * running
        out[t], next_value = running, values[t]
    return out


def test_gae_loop_vs_vectorised():
    gen = torch.Generator().manual_seed(1)
    batch, width = 6, 12
    mask = torch.zeros(batch, width, dtype=torch.long)
    spans = []
    for i in range(batch):
        start = int(torch.randint(1, 5, (1,), generator=gen))
        length = int(torch.randint(1, width - start + 1, (1,), generator=gen))
        mask[i, start:start + length] = 1
        spans.append((start, start + length))
    rewards = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    values = torch.randn(batch, width, generator=gen, dtype=torch.float64)
    adv, ret = gae(rewards * mask, values, mask, gamma=0.9, lam=0.8)
    for i, (a, b) in enumerate(spans):
        expected = _gae_loop(rewards[i, a:b].tolist(), values[i, a:b].tolist(), 0.9, 0.8)
        assert torch.allclose(adv[i, a:b], torch.tensor(expected, dtype=torch.float64))
        assert torch.allclose(ret[i, a:b], adv[i, a:b] + values[i, a:b])
        assert adv[i, :a].abs().sum() == 0 and adv[i, b:].abs().sum() == 0
