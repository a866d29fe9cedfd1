"""Sampler/trainer mismatch and truncated importance sampling (issue 12; TIS as in verl and TRL,
after Yao et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training").

A rollout engine (vLLM) samples token ``y_t`` from its own numerics ``q`` while the trainer's
forward pass of the same weights gives ``p``; kernels, precision and batching make them differ.
With ``d_t = log p(y_t) - log q(y_t)`` on the sampled tokens (mask ``m``):

* ``logprob_abs_diff = sum_t m_t |d_t| / sum_t m_t``
* ``kl = sum_t m_t (exp(d_t) - 1 - d_t) / sum_t m_t``: the k3 estimator (Schulman 2020) of
  ``KL(q || p)`` from samples of ``q``; non-negative, zero iff ``p = q`` on every sampled token.
* truncated importance weights ``w_t = min(exp(d_t), cap)`` (no gradient), which multiply each
  token's gradient coefficient so the update estimates the trainer policy's gradient while the
  cap bounds the variance.
"""

from __future__ import annotations

import torch


def mismatch_stats(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor,
                   mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean |log p - log q| and the k3 estimate of KL(q || p) over the ``mask`` tokens (module doc)."""
    m = mask.to(torch.float64)
    count = m.sum().clamp(min=1.0)
    diff = (trainer_logprobs.double() - sampler_logprobs.double()) * m
    k3 = (torch.expm1(diff) - diff) * m
    return {"logprob_abs_diff": diff.abs().sum() / count, "kl": k3.sum() / count,
            "logprob_max_abs_diff": diff.abs().max() if m.any() else diff.new_zeros(())}


def tis_weights(trainer_logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor,
                cap: float) -> torch.Tensor:
    """[B,T] ``min(exp(log p - log q), cap)`` on ``mask`` tokens and 1 elsewhere (no gradient)."""
    if cap <= 0:
        raise ValueError(f"tis_weights: cap must be > 0, got {cap}")
    ratio = torch.exp((trainer_logprobs - sampler_logprobs).detach().float()).clamp(max=cap)
    return torch.where(mask.bool(), ratio, torch.ones_like(ratio))


__all__ = ["mismatch_stats", "tis_weights"]
