"""GRPO-family gradient coefficients: clip-higher (DAPO), GSPO, RLOO, REINFORCE++.

Registered in the same registry as :mod:`expo_rl.core.coefficients` (one signature, keyword-only
hyper-parameters; the shared step minimises ``-sum GC * log pi / D``, so under ``seq_mean``
``GC[i,t] = |o_i| * D * dJ/d log pi[i,t]``). Every entry also takes ``overlong_filter``
(DAPO section 3.4, "overlong filtering"): rows that hit the length cap (``truncated`` = 1) get
``GC = 0`` and drop out of ``J``; they still count in the loss denominator and in their
group's statistics. Their number is logged as ``<term>/overlong_filtered``.

- ``clip_higher`` (DAPO eq. 10): GRPO with separate clip ranges,
  ``min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A)``; ``eps_low = eps_high`` is GRPO.
- ``gspo`` (Zheng et al. 2025, eqs. 5-7): one ratio per sequence,
  ``s_i = exp((1/|o_i|) sum_t (log pi_theta - log pi_old))``, ``J = mean_i min(s_i A_i,
  clip(s_i, 1 - eps_low, 1 + eps_high) A_i)``; ``dJ/d log pi[i,t] = s_i A_i / |o_i|`` when not
  clipped, so ``GC[i,t] = s_i A_i 1{not clipped}`` on every token of row i.
- ``rloo`` (Ahmadian et al. 2024): the clipped surrogate with the leave-one-out advantage
  ``r_i - mean_{j != i} r_j`` (with ``mu = 1`` the ratio is 1: plain REINFORCE with that baseline).
- ``reinforce_pp`` (Hu et al. 2025): the clipped surrogate with REINFORCE++'s advantage, the
  KL-penalised return whitened over the batch's tokens (``group_baseline``: the
  REINFORCE++-baseline variant).

The optional ``beta`` k3 KL term is GRPO's (SPEC 2.5): ``-beta * (pi_ref/pi - log(pi_ref/pi) - 1)``
per token, ``GC += beta * (pi_ref/pi - 1)``.
"""

from __future__ import annotations

import torch

from expo_rl.core.advantages import OUTCOME_ADVANTAGES, outcome_advantages, reinforce_pp_advantages
from expo_rl.core.coefficients import (
    CoefficientInputs,
    Coefficients,
    Needs,
    Stat,
    per_token,
    register_coefficient,
    require_input,
)
from expo_rl.core.masked import masked_mean, sequence_lengths, sequence_mean


def clipped(ratio: torch.Tensor, advantages: torch.Tensor, eps_low: float, eps_high: float
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``min(ratio A, clip(ratio, 1 - eps_low, 1 + eps_high) A)`` elementwise.

    Returns (surrogate, gc = ratio * A * 1{not clipped}, clipped bool). The min takes the
    clipped branch (gradient 0) exactly when ratio > 1 + eps_high with A > 0 or
    ratio < 1 - eps_low with A < 0.
    """
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - eps_low, 1 + eps_high) * advantages)
    cut = ((ratio > 1 + eps_high) & (advantages > 0)) | ((ratio < 1 - eps_low) & (advantages < 0))
    gc = torch.where(cut, torch.zeros_like(ratio), ratio * advantages)
    return surrogate, gc, cut


def _keep(inputs: CoefficientInputs, mask: torch.Tensor, overlong_filter: bool
          ) -> tuple[torch.Tensor, dict[str, Stat]]:
    """Per-row weight [B]: 0 for truncated rows under ``overlong_filter``, else 1."""
    keep = torch.ones(mask.shape[0], dtype=mask.dtype, device=mask.device)
    if not overlong_filter:
        return keep, {}
    truncated = inputs.truncated
    if truncated is None:
        raise ValueError("overlong_filter needs the rows' 'truncated' flags in the batch")
    keep = 1 - truncated.to(mask.dtype)
    return keep, {"overlong_filtered": float((keep == 0).sum())}


def _advantages(inputs: CoefficientInputs, estimator: str, method: str, mask: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, Stat]]:
    """Per-row outcome advantages [B] by ``estimator`` over ``group_index`` (or the precomputed
    ``advantages`` input), with the zero-signal counts."""
    if inputs.advantages is not None:
        return inputs.advantages.to(mask.dtype), {}
    rewards = require_input(inputs, "rewards", method)
    groups = inputs.group_index if inputs.group_index is not None else torch.zeros_like(rewards, dtype=torch.long)
    grouped = outcome_advantages(estimator, rewards, groups)
    return grouped.advantages.to(mask.dtype), {"zero_signal_groups": float(grouped.num_zero_signal_groups),
                                               "groups": float(grouped.num_groups)}


def _k3(inputs: CoefficientInputs, mask: torch.Tensor, beta: float, method: str
        ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Stat]]:
    """GRPO's k3 KL penalty per token and its GC part (zeros when ``beta == 0``)."""
    if beta == 0:
        zero = torch.zeros_like(mask)
        return zero, zero, {}
    log_r = (require_input(inputs, "ref_logprobs", method) - inputs.logprobs) * mask  # log pi_ref/pi
    k3 = (torch.exp(log_r) - log_r - 1) * mask
    return beta * k3, beta * (torch.exp(log_r) - 1) * mask, {"kl": masked_mean(k3, mask).detach()}


def _token_level(inputs: CoefficientInputs, advantages: torch.Tensor, *, eps_low: float, eps_high: float,
                 beta: float, overlong_filter: bool, method: str, stats: dict[str, Stat]) -> Coefficients:
    """The token-level clipped surrogate (PPO/GRPO form) with per-token advantages [B, T]."""
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    keep, keep_stats = _keep(inputs, mask, overlong_filter)
    ratio = torch.exp(inputs.logprobs - inputs.old)
    surrogate, gc, cut = clipped(ratio, advantages, eps_low, eps_high)
    penalty, kl_gc, kl_stats = _k3(inputs, mask, beta, method)
    row_weight = per_token(keep, mask) * mask
    gc = (gc + kl_gc) * row_weight
    objective = (keep * sequence_mean((surrogate - penalty) * mask, mask)).mean()
    cut = cut & (mask > 0)
    stats.update(keep_stats)
    stats.update(kl_stats)
    stats["clip_frac"] = masked_mean(cut.to(mask.dtype), mask).detach()
    stats["clip_low_frac"] = masked_mean((cut & (ratio < 1)).to(mask.dtype), mask).detach()
    stats["ratio"] = masked_mean(ratio, mask).detach()
    return Coefficients(gc.detach(), objective.detach(), stats)


def _needs_ref_and_old(hp: dict) -> Needs:
    """Reference only for a KL term; also checks ``advantage`` when the run is set up."""
    if "advantage" in hp and hp["advantage"] not in OUTCOME_ADVANTAGES:
        raise ValueError(f"coefficient_args.advantage: {hp['advantage']!r} is not allowed; allowed values: "
                         f"{', '.join(OUTCOME_ADVANTAGES)}")
    return Needs(reference=hp["beta"] != 0, old_logprobs=True)


@register_coefficient("clip_higher", needs=_needs_ref_and_old)
def clip_higher(inputs: CoefficientInputs, *, clip_eps_low: float = 0.2, clip_eps_high: float = 0.28,
                beta: float = 0.0, advantage: str = "grpo", overlong_filter: bool = False) -> Coefficients:
    """Clip-higher (DAPO eq. 10): ``GC = ratio A 1{not clipped} + beta (pi_ref/pi - 1)``, clip range
    ``[1 - eps_low, 1 + eps_high]``.

    ``J = mean_i (1/|o_i|) sum_t [min(ratio A_i, clip(ratio, 1 - eps_low, 1 + eps_high) A_i)
    - beta k3_t]``; ``A_i`` by ``advantage`` (grpo: (r - mean)/std, dr_grpo: r - mean, rloo).
    DAPO drops the KL term (``beta = 0``).
    """
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    advantages, stats = _advantages(inputs, advantage, "clip_higher", mask)
    return _token_level(inputs, per_token(advantages, mask) * mask, eps_low=clip_eps_low,
                        eps_high=clip_eps_high, beta=beta, overlong_filter=overlong_filter,
                        method="clip_higher", stats=stats)


@register_coefficient("rloo", needs=_needs_ref_and_old)
def rloo(inputs: CoefficientInputs, *, clip_eps: float = 0.2, beta: float = 0.0,
         overlong_filter: bool = False) -> Coefficients:
    """RLOO (Ahmadian et al. 2024): ``GC = ratio A_i 1{not clipped}``, ``A_i = r_i - mean_{j != i} r_j``.

    ``J = mean_i (1/|o_i|) sum_t [min(ratio A_i, clip(ratio, 1 - eps, 1 + eps) A_i) - beta k3_t]``.
    """
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    advantages, stats = _advantages(inputs, "rloo", "rloo", mask)
    return _token_level(inputs, per_token(advantages, mask) * mask, eps_low=clip_eps, eps_high=clip_eps,
                        beta=beta, overlong_filter=overlong_filter, method="rloo", stats=stats)


@register_coefficient("reinforce_pp", needs=lambda hp: Needs(reference=hp["kl_beta"] != 0, old_logprobs=True))
def reinforce_pp(inputs: CoefficientInputs, *, clip_eps: float = 0.2, kl_beta: float = 0.01,
                 gamma: float = 1.0, group_baseline: bool = False,
                 overlong_filter: bool = False) -> Coefficients:
    """REINFORCE++ (Hu et al. 2025): ``GC = ratio A_t 1{not clipped}``, ``A_t`` = the return of
    ``-kl_beta (log pi_old - log pi_ref)`` per token + the outcome reward, whitened over the batch.

    ``J = mean_i (1/|o_i|) sum_t min(ratio A_t, clip(ratio, 1 - eps, 1 + eps) A_t)``; the KL
    lives in the reward (as PPO's), so there is no separate penalty. ``group_baseline``:
    REINFORCE++-baseline (subtract each group's mean reward first).
    """
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    if inputs.advantages is not None:
        advantages = per_token(inputs.advantages, mask) * mask
    else:
        groups = require_input(inputs, "group_index", "reinforce_pp") if group_baseline else None
        advantages = reinforce_pp_advantages(require_input(inputs, "rewards", "reinforce_pp"), inputs.old,
                                             inputs.ref_logprobs, mask, kl_beta=kl_beta, gamma=gamma,
                                             group_index=groups)
    stats: dict[str, Stat] = {"advantage_std": masked_mean(advantages ** 2, mask).sqrt().detach()}
    if inputs.ref_logprobs is not None:
        stats["kl"] = masked_mean(inputs.old - inputs.ref_logprobs, mask).detach()
    return _token_level(inputs, advantages, eps_low=clip_eps, eps_high=clip_eps, beta=0.0,
                        overlong_filter=overlong_filter, method="reinforce_pp", stats=stats)


@register_coefficient("gspo", needs=_needs_ref_and_old)
def gspo(inputs: CoefficientInputs, *, clip_eps_low: float = 3e-4, clip_eps_high: float = 4e-4,
         beta: float = 0.0, advantage: str = "grpo", overlong_filter: bool = False) -> Coefficients:
    """GSPO (Zheng et al. 2025, eq. 5): ``GC[i,t] = s_i A_i 1{not clipped_i} + beta (pi_ref/pi - 1)``
    with the sequence ratio ``s_i = exp(mean_t (log pi_theta - log pi_old))``.

    ``J = mean_i [min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i) - beta (1/|o_i|) sum_t k3_t]``;
    a sequence is clipped (no gradient on any of its tokens) or not as a whole. Defaults are
    the paper's clip range (3e-4, 4e-4).
    """
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    advantages, stats = _advantages(inputs, advantage, "gspo", mask)
    if advantages.dim() != 1:
        raise ValueError("gspo: precomputed advantages must be per row [B] (one per sequence)")
    keep, keep_stats = _keep(inputs, mask, overlong_filter)
    lengths = sequence_lengths(mask).to(mask.dtype).clamp(min=1)
    seq_ratio = torch.exp(((inputs.logprobs - inputs.old) * mask).sum(-1) / lengths)
    surrogate, row_gc, cut = clipped(seq_ratio, advantages, clip_eps_low, clip_eps_high)
    penalty, kl_gc, kl_stats = _k3(inputs, mask, beta, "gspo")
    gc = (per_token(row_gc, mask) * mask + kl_gc) * per_token(keep, mask)
    objective = (keep * (surrogate - sequence_mean(penalty, mask))).mean()
    stats.update(keep_stats)
    stats.update(kl_stats)
    stats["clip_frac"] = cut.to(mask.dtype).mean().detach()  # share of sequences clipped
    stats["ratio"] = seq_ratio.mean().detach()
    return Coefficients(gc.detach(), objective.detach(), stats)
