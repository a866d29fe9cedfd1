"""Advantage estimators: GRPO's group-normalised outcome advantage and PPO's GAE.

- :func:`group_advantages` (SPEC 2.5, DeepSeekMath eq. 19 with outcome supervision):
  ``A_i = (r_i - mean(r_group)) / std(r_group)`` for every token of output i; a group whose
  rewards are all equal gets ``A = 0`` (the std = 0 guard) and counts as a *zero-signal group*.
  ``scale_by_std=False`` is Dr. GRPO's variant ``A_i = r_i - mean(r_group)``.
- :func:`kl_penalised_rewards` (SPEC 2.4, InstructGPT/DeepSeekMath PPO): per-token reward
  ``r_t = -beta * (log pi_old - log pi_ref)_t`` plus the outcome reward on the last token.
- :func:`gae` (Schulman et al. 2016): ``delta_t = r_t + gamma * V_{t+1} - V_t``,
  ``A_t = delta_t + gamma * lambda * A_{t+1}``, ``V`` after the last token = 0; returns
  ``R_t = A_t + V_t`` are the value model's targets.

Shapes: per-row tensors [B], per-token tensors [B, T] aligned with ``completion_mask`` (the
completion occupies a contiguous run of positions in each row; everything else is masked out).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expo_rl.core.masked import group_all_equal, group_mean_std, group_sizes, last_token_index


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
