"""Gradient coefficients without a model: the registry, hand numbers, and the identity
``GC[i,t] = |o_i| * D * dJ/d log pi[i,t]`` (the shared step's seq_mean weighting; without the
``|o_i|`` for a coefficient with its own normalisation, DPO) against autograd of each
closed-form objective, with the log-probs as the leaf tensor."""

import math

import pytest
import torch
import torch.nn.functional as F

from expo_rl.core.coefficients import (
    COEFFICIENTS,
    CoefficientInputs,
    Needs,
    coefficient_needs,
    get_coefficient,
    has_own_normalisation,
    resolve_hparams,
)

B, T = 6, 7


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, T, dtype=torch.long)
    for i in range(B):
        start = 1 + i % 2
        mask[i, start:start + 2 + (i * 3) % (T - start - 1)] = 1
    def lp():
        return (-torch.rand(B, T, generator=gen, dtype=torch.float64) * 3) * mask
    logprobs, ref = lp(), lp()
    old = (logprobs + (torch.rand(B, T, generator=gen, dtype=torch.float64) - 0.5)) * mask
    return mask, logprobs, ref, old


def _identity_check(out, logprobs, objective, samples, own_normalisation=False):
    """GC must equal |o_i| * samples * dJ/dlogp (samples * dJ/dlogp: own normalisation)."""
    (grad,) = torch.autograd.grad(objective, logprobs)
    lengths = (logprobs != 0).sum(-1, keepdim=True).to(grad.dtype)
    expected = grad * samples * (1 if own_normalisation else lengths)
    torch.testing.assert_close(out.gc, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.objective, objective.detach(), rtol=1e-10, atol=1e-12)


def test_registry_has_the_methods_with_one_signature():
    assert {"sft", "rft", "dpo", "ppo", "grpo"} <= set(COEFFICIENTS)
    with pytest.raises(ValueError, match="allowed: .*grpo"):
        get_coefficient("nope")
    with pytest.raises(ValueError, match="clip_eps"):
        resolve_hparams("grpo", {"clip": 0.1})
    assert coefficient_needs("grpo", {"beta": 0.0}) == Needs(reference=False, old_logprobs=True)
    assert coefficient_needs("grpo").reference and coefficient_needs("dpo").reference
    assert coefficient_needs("ppo", {"kl_beta": 0}) == Needs(old_logprobs=True, values=True)
    assert has_own_normalisation("dpo") and not has_own_normalisation("grpo")


def test_sft_and_rft():
    mask, logprobs, _, _ = _batch()
    leaf = logprobs.clone().requires_grad_(True)
    out = get_coefficient("sft")(CoefficientInputs(logprobs=logprobs, completion_mask=mask))
    _identity_check(out, leaf, ((leaf * mask).sum(-1) / mask.sum(-1)).mean(), B)

    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    out = get_coefficient("rft")(CoefficientInputs(logprobs=logprobs, completion_mask=mask, rewards=rewards))
    _identity_check(out, leaf, (rewards * (leaf * mask).sum(-1) / mask.sum(-1)).mean(), B)
    assert out.stats["accuracy"].item() == 0.5
    assert out.gc[1].abs().sum() == 0  # a wrong sample has no coefficient


@pytest.mark.parametrize("length_normalized", [False, True])
def test_dpo(length_normalized):
    mask, logprobs, ref, _ = _batch(1)
    pair_index = torch.tensor([0, 0, 1, 1, 2, 2])
    sign = torch.tensor([1, -1, -1, 1, 1, -1])
    beta = 0.3
    leaf = logprobs.clone().requires_grad_(True)
    ratio = ((leaf - ref) * mask).sum(-1)
    if length_normalized:
        ratio = ratio / mask.sum(-1)
    chosen = torch.stack([ratio[0], ratio[3], ratio[4]])
    rejected = torch.stack([ratio[1], ratio[2], ratio[5]])
    objective = F.logsigmoid(beta * (chosen - rejected)).mean()
    out = get_coefficient("dpo")(CoefficientInputs(logprobs=logprobs, completion_mask=mask, ref_logprobs=ref,
                                                   pair_index=pair_index, pair_sign=sign),
                                 beta=beta, length_normalized=length_normalized)
    _identity_check(out, leaf, objective, 3, own_normalisation=True)  # 3 pairs = 3 samples


def test_dpo_hand_numbers_and_errors():
    mask = torch.tensor([[1, 1], [1, 1]])
    zeros = torch.zeros(2, 2, dtype=torch.float64)
    out = get_coefficient("dpo")(CoefficientInputs(logprobs=zeros, completion_mask=mask, ref_logprobs=zeros,
                                                   pair_index=torch.tensor([0, 0]), pair_sign=torch.tensor([1, -1])),
                                 beta=0.1, length_normalized=True)
    # policy == reference: margin 0, sigma(0) = 1/2, GC = +-beta/2 * 1/|o| (|o| = 2); J = log(1/2)
    assert torch.allclose(out.gc, torch.tensor([[0.025, 0.025], [-0.025, -0.025]], dtype=torch.float64))
    assert math.isclose(out.objective.item(), math.log(0.5))
    with pytest.raises(ValueError, match="exactly one chosen"):
        get_coefficient("dpo")(CoefficientInputs(logprobs=zeros, completion_mask=mask, ref_logprobs=zeros,
                                                 pair_index=torch.tensor([0, 0]), pair_sign=torch.tensor([1, 1])))


def _clipped(leaf, old, adv, mask, eps):
    ratio = torch.exp(leaf - old)
    return torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv) * mask


def test_ppo_with_given_advantages_and_clipping():
    mask, logprobs, _, old = _batch(2)
    adv = torch.randn(B, T, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * mask
    leaf = logprobs.clone().requires_grad_(True)
    objective = (_clipped(leaf, old, adv, mask, 0.1).sum(-1) / mask.sum(-1)).mean()
    out = get_coefficient("ppo")(CoefficientInputs(logprobs=logprobs, completion_mask=mask, old_logprobs=old,
                                                   advantages=adv), clip_eps=0.1, kl_beta=0.0)
    _identity_check(out, leaf, objective, B)
    assert 0 < out.stats["clip_frac"] < 1


def test_ppo_gae_and_value_loss():
    mask, logprobs, ref, old = _batch(4)
    gen = torch.Generator().manual_seed(5)
    rewards = torch.rand(B, dtype=torch.float64, generator=gen)
    old_values = torch.randn(B, T, dtype=torch.float64, generator=gen) * mask
    values = (old_values + 0.3 * torch.randn(B, T, dtype=torch.float64, generator=gen)).requires_grad_(True)
    out = get_coefficient("ppo")(CoefficientInputs(logprobs=logprobs, completion_mask=mask, old_logprobs=old,
                                                   ref_logprobs=ref, rewards=rewards, values=values,
                                                   old_values=old_values),
                                 clip_eps=0.2, kl_beta=0.1, gamma=0.9, lam=0.8, value_coef=0.5, value_clip=0.2)
    # the value loss is per token with gradient; clipping: where |V - V_old| > 0.2 and the clipped
    # error is larger, the gradient to V is 0
    assert out.aux_token_loss.requires_grad and not out.gc.requires_grad
    (grad,) = torch.autograd.grad(out.aux_token_loss.sum(), values)
    assert (grad[mask.bool()] == 0).any() and (grad[mask.bool()] != 0).any()
    assert torch.all(grad[~mask.bool()] == 0)


def test_grpo():
    mask, logprobs, ref, old = _batch(6)
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    eps, beta = 0.15, 0.05
    # group 0: rewards 1, 0, 0 -> mean 1/3, unbiased std sqrt(1/3): A = (2/3, -1/3, -1/3)/sqrt(1/3)
    a = torch.tensor([2 / 3, -1 / 3, -1 / 3], dtype=torch.float64) / math.sqrt(1 / 3)
    adv = torch.cat([a, torch.zeros(3, dtype=torch.float64)])[:, None] * mask  # group 1: zero signal
    leaf = logprobs.clone().requires_grad_(True)
    log_r = (ref - leaf) * mask
    per_token = _clipped(leaf, old, adv, mask, eps) - beta * (torch.exp(log_r) - log_r - 1) * mask
    objective = (per_token.sum(-1) / mask.sum(-1)).mean()
    out = get_coefficient("grpo")(CoefficientInputs(logprobs=logprobs, completion_mask=mask, old_logprobs=old,
                                                    ref_logprobs=ref, rewards=rewards, group_index=groups),
                                  clip_eps=eps, beta=beta)
    _identity_check(out, leaf, objective, B)
    assert out.stats["zero_signal_groups"] == 1 and 0 < out.stats["clip_frac"] < 1
    # zero-signal group: only the KL pull towards pi_ref is left, GC = beta * (pi_ref/pi - 1)
    torch.testing.assert_close(out.gc[3:], beta * (torch.exp(log_r[3:].detach()) - 1) * mask[3:])
