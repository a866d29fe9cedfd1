"""Advantage estimators: GRPO's group-normalised outcome advantage, PPO's GAE, RLOO, REINFORCE++.

- :func:`group_advantages` (SPEC 2.5, DeepSeekMath eq. 19 with outcome supervision):
  ``A_i = (r_i - mean(r_group)) / std(r_group)`` for every token of output i; a group whose
  rewards are all equal gets ``A = 0`` (the std = 0 guard) and counts as a *zero-signal group*.
  ``scale_by_std=False`` is Dr. GRPO's variant ``A_i = r_i - mean(r_group)``.
- :func:`kl_penalised_rewards` (SPEC 2.4, InstructGPT/DeepSeekMath PPO): per-token reward
  ``r_t = -beta * (log pi_old - log pi_ref)_t`` plus the outcome reward on the last token.
- :func:`gae` (Schulman et al. 2016): ``delta_t = r_t + gamma * V_{t+1} - V_t``,
  ``A_t = delta_t + gamma * lambda * A_{t+1}``, ``V`` after the last token = 0; returns
  ``R_t = A_t + V_t`` are the value model's targets.
- :func:`rloo_advantages`: RLOO's leave-one-out baseline ``r_i - mean_{j != i} r_j``;
  :data:`OUTCOME_ADVANTAGES` names the per-group outcome estimators (grpo, dr_grpo, rloo).
- :func:`reinforce_pp_advantages`: REINFORCE++'s KL-penalised returns whitened over the batch.

Shapes: per-row tensors [B], per-token tensors [B, T] aligned with ``completion_mask`` (the
completion occupies a contiguous run of positions in each row; everything else is masked out).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expo_rl.core.masked import (
    group_all_equal,
    group_mean_std,
    group_sizes,
    last_token_index,
    whiten,
)


@dataclass(frozen=True)
class GroupAdvantages:
    """Per-row advantages [N] plus how many groups carried no signal."""

    advantages: torch.Tensor
    zero_signal: torch.Tensor  # [N] bool: the row's group (of >= 2 rows) has all-equal rewards
    num_groups: int            # groups of >= 2 rows
    num_zero_signal_groups: int


def group_advantages(rewards: torch.Tensor, group_index: torch.Tensor, *,
                     scale_by_std: bool = True, unbiased_std: bool = True) -> GroupAdvantages:
    """GRPO outcome advantages ``(r - mean) / std`` within each group (SPEC 2.5).

    rewards: [N] float, group_index: [N] long (negative: a group of one, advantage 0).
    ``scale_by_std=False`` gives Dr. GRPO's ``r - mean``. Groups with all-equal rewards get
    exactly 0 (no division by a zero std).
    """
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    mean, std = group_mean_std(rewards, group_index, unbiased=unbiased_std)
    flat = group_all_equal(rewards, group_index)
    centred = rewards - mean
    scaled = centred / torch.where(flat, torch.ones_like(std), std) if scale_by_std else centred
    advantages = torch.where(flat, torch.zeros_like(scaled), scaled)
    sizes = group_sizes(group_index)
    in_group = sizes >= 2
    # each group of size n contributes n rows; summing 1/n over its rows counts it once
    weight = 1.0 / sizes.to(rewards.dtype)
    num_groups = int(round(float((weight * in_group).sum())))
    num_zero = int(round(float((weight * (in_group & flat)).sum())))
    return GroupAdvantages(advantages, flat & in_group, num_groups, num_zero)


def kl_penalised_rewards(rewards: torch.Tensor, old_logprobs: torch.Tensor,
                         ref_logprobs: torch.Tensor | None, completion_mask: torch.Tensor, *,
                         kl_beta: float) -> torch.Tensor:
    """Per-token PPO rewards (SPEC 2.4): ``-kl_beta * (log pi_old - log pi_ref)_t`` on every
    completion token, plus the outcome reward ``rewards[i]`` on row i's last completion token.

    rewards: [B]; old_logprobs, ref_logprobs, completion_mask: [B, T] -> [B, T] (0 off the mask).
    ``ref_logprobs`` may be None only when ``kl_beta == 0``.
    """
    mask = completion_mask.to(old_logprobs.dtype)
    if kl_beta != 0.0:
        if ref_logprobs is None:
            raise ValueError(f"kl_beta={kl_beta} needs reference log-probs (ref_logprobs)")
        token_rewards = -kl_beta * (old_logprobs - ref_logprobs) * mask
    else:
        token_rewards = torch.zeros_like(old_logprobs)
    last = last_token_index(completion_mask)
    has_tokens = last >= 0
    rows = torch.arange(last.numel(), device=last.device)[has_tokens]
    outcome = rewards.to(token_rewards.dtype)[has_tokens]
    return token_rewards.index_put((rows, last[has_tokens]), outcome, accumulate=True)


def gae(token_rewards: torch.Tensor, values: torch.Tensor, completion_mask: torch.Tensor, *,
        gamma: float = 1.0, lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the completion tokens of each row.

    token_rewards, values, completion_mask: [B, T]. ``values[:, t]`` is V(q, o_<t), the value of
    the state in which token t is chosen. Returns (advantages [B, T], returns [B, T]), both 0
    off the mask; ``returns = advantages + values``. The recursion runs right to left over the
    masked positions only, so prompt and padding positions neither receive nor pass on credit.
    """
    mask = completion_mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    columns = mask.any(0).nonzero().flatten().tolist()  # skip all-prompt / all-padding columns
    for t in reversed(columns):
        m = mask[:, t]
        delta = token_rewards[:, t] + gamma * next_value - values[:, t]
        adv = delta + gamma * lam * next_adv
        advantages[:, t] = adv * m
        next_adv = torch.where(m > 0, adv, next_adv)
        next_value = torch.where(m > 0, values[:, t], next_value)
    returns = (advantages + values) * mask
    return advantages, returns


def rloo_advantages(rewards: torch.Tensor, group_index: torch.Tensor) -> GroupAdvantages:
    """RLOO (Kool et al. 2019; Ahmadian et al. 2024, eq. 10): the leave-one-out baseline
    ``A_i = r_i - (1/(G-1)) sum_{j != i} r_j = G/(G-1) * (r_i - mean(r_group))``.

    Rows of a group of one (negative ``group_index`` or a lone id) get 0: no baseline exists.
    Zero-signal groups (all rewards equal) get exactly 0, as in :func:`group_advantages`.
    """
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    mean, _ = group_mean_std(rewards, group_index)
    sizes = group_sizes(group_index).to(rewards.dtype)
    flat = group_all_equal(rewards, group_index)
    in_group = sizes >= 2
    scale = torch.where(in_group, sizes / (sizes - 1).clamp(min=1), torch.zeros_like(sizes))
    advantages = torch.where(flat | ~in_group, torch.zeros_like(rewards), scale * (rewards - mean))
    weight = 1.0 / sizes
    num_groups = int(round(float((weight * in_group).sum())))
    num_zero = int(round(float((weight * (in_group & flat)).sum())))
    return GroupAdvantages(advantages, flat & in_group, num_groups, num_zero)


OUTCOME_ADVANTAGES = {
    # name -> (rewards [N], group_index [N]) -> GroupAdvantages
    "grpo": lambda r, g: group_advantages(r, g, scale_by_std=True),
    "dr_grpo": lambda r, g: group_advantages(r, g, scale_by_std=False),
    "rloo": rloo_advantages,
}
"""Outcome-advantage estimators by name (a coefficient's ``advantage`` hyper-parameter)."""


def outcome_advantages(name: str, rewards: torch.Tensor, group_index: torch.Tensor) -> GroupAdvantages:
    """The registered estimator ``name`` (``grpo``: (r - mean)/std, ``dr_grpo``: r - mean,
    ``rloo``: leave-one-out) applied per group."""
    if name not in OUTCOME_ADVANTAGES:
        raise ValueError(f"unknown advantage estimator {name!r}; allowed values: "
                         f"{', '.join(OUTCOME_ADVANTAGES)}")
    return OUTCOME_ADVANTAGES[name](rewards, group_index)


def reinforce_pp_advantages(rewards: torch.Tensor, old_logprobs: torch.Tensor,
                            ref_logprobs: torch.Tensor | None, completion_mask: torch.Tensor, *,
                            kl_beta: float, gamma: float = 1.0,
                            group_index: torch.Tensor | None = None) -> torch.Tensor:
    """REINFORCE++ (Hu et al. 2025, eqs. 5-7): per-token rewards ``-kl_beta * (log pi_old -
    log pi_ref)_t`` plus the outcome reward on the last token, discounted returns
    ``G_t = sum_{s >= t} gamma^(s-t) r_s``, then whitened over every completion token of the
    batch: ``A_t = (G_t - mean(G)) / sqrt(var(G) + 1e-8)``.

    ``group_index`` given: the REINFORCE++-baseline variant, which first subtracts each group's
    mean outcome reward. Returns [B, T] (0 off the mask).
    """
    if group_index is not None:
        mean, _ = group_mean_std(rewards.to(old_logprobs.dtype), group_index)
        rewards = rewards.to(old_logprobs.dtype) - mean
    token_rewards = kl_penalised_rewards(rewards, old_logprobs, ref_logprobs, completion_mask,
                                         kl_beta=kl_beta)
    returns, _ = gae(token_rewards, torch.zeros_like(old_logprobs), completion_mask, gamma=gamma, lam=1.0)
    return whiten(returns, completion_mask.to(returns.dtype))
