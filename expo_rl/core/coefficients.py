"""Gradient-coefficient functions: the per-method part of the one shared gradient (SPEC 2).

Every method's gradient is ``E[(1/|o|) sum_t GC(q, o, t) * grad log pi_theta(o_t | q, o_<t)]``
(DeepSeekMath appendix A.1). A coefficient function computes ``GC`` for the rows of its loss
term, without gradient, plus the value of the method's own objective ``J`` (the surrogate
``-sum GC * log pi`` has a meaningless value) and statistics. The shared step
(:mod:`expo_rl.engine.step`) then minimises ``-sum_{i,t} w[i,t] * GC[i,t] * log pi[i,t] / D``,
whose gradient is exactly ``-grad J`` under the paper's ``seq_mean`` aggregation (and under every
aggregation for a coefficient with its own normalisation, below).

One signature for every entry, chosen by name::

    @register_coefficient("name", needs=...)
    def name(inputs: CoefficientInputs, *, hparam: float = default, ...) -> Coefficients

Hyper-parameters are keyword-only with defaults; they are the allowed keys of a term's
``coefficient_args``. ``needs`` says which fixed inputs the step must provide (reference
log-probs, old-policy log-probs, a value model), possibly depending on the hyper-parameters.

``own_normalisation=True`` declares that GC already holds every per-token and per-sequence
weight of the objective ``J = (1/N) sum_{samples} sum_{i in sample, t} GC * log pi`` (DPO: per
pair; ExP-SFT: the summed log-likelihood per question): the step then sums the term's tokens
and divides by its number of samples ``N`` under every loss aggregation
(:mod:`expo_rl.core.aggregation`, ``sample_sum``), so the term is exact whatever
``train.loss_aggregation`` says. Without it, GC is the per-token coefficient of the paper's
``(1/|o|) sum_t`` form and the run's aggregation applies.

Registered: ``sft`` (eq. 6), ``rft`` (eqs. 8 and 11: RFT and online RFT differ only in the
data source), ``dpo`` (eqs. 12-14), ``ppo`` (eqs. 15-18), ``grpo`` (eqs. 19-21), and ExPO's
``exp_sft`` (ExPO eq. 9, SPEC 3.5), beside ``sft`` so that no import registers anything; the
GRPO-family variants (``clip_higher``, ``gspo``, ``rloo``, ``reinforce_pp``) live in
:mod:`expo_rl.core.variants`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from expo_rl.core.advantages import gae, group_advantages, kl_penalised_rewards
from expo_rl.core.masked import dense_ids, masked_mean, sequence_lengths, sequence_mean
from expo_rl.registry import Registry

Stat = torch.Tensor | float


@dataclass
class CoefficientInputs:
    """The rows of one loss term in one micro-batch. Per-token tensors are [B, T] and are 0 off
    ``completion_mask``; per-row tensors are [B].

    ``logprobs`` are the current policy's, detached. ``old_logprobs`` default to ``logprobs``
    (ratio 1: the first inner update). ``values`` is the only tensor that carries gradient: the
    value model's current estimates, for a coefficient that trains it (PPO).
    """

    logprobs: torch.Tensor
    completion_mask: torch.Tensor
    rewards: torch.Tensor | None = None
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    group_index: torch.Tensor | None = None   # [B] long, -1 = no group
    pair_index: torch.Tensor | None = None    # [B] long, -1 = no pair
    pair_sign: torch.Tensor | None = None     # [B] +1 chosen, -1 rejected, 0 unpaired
    advantages: torch.Tensor | None = None    # [B] or [B, T]: precomputed, overrides the estimator
    values: torch.Tensor | None = None        # [B, T] current V(q, o_<t), with gradient
    old_values: torch.Tensor | None = None    # [B, T] V at sampling time, detached
    truncated: torch.Tensor | None = None     # [B] 1 = the sample hit the length cap (no EOS)

    @property
    def old(self) -> torch.Tensor:
        return self.logprobs if self.old_logprobs is None else self.old_logprobs


@dataclass
class Coefficients:
    """What a coefficient function returns.

    gc: [B, T] detached per-token coefficients (0 off the mask).
    objective: 0-dim detached tensor, the method's own objective J (higher is better), averaged
        over the samples of this batch (rows, or pairs for DPO) as in the paper's equation.
    stats: detached 0-dim tensors or floats, logged as ``<term>/<key>``.
    aux_token_loss: optional [B, T] loss *with* gradient added to the term's per-token loss and
        aggregated the same way (PPO's value loss); None for most methods.
    """

    gc: torch.Tensor
    objective: torch.Tensor
    stats: dict[str, Stat] = field(default_factory=dict)
    aux_token_loss: torch.Tensor | None = None


@dataclass(frozen=True)
class Needs:
    """Fixed inputs a coefficient needs from the step."""

    reference: bool = False      # ref_logprobs from the frozen initial policy
    old_logprobs: bool = False   # pi_old log-probs (matter only with mu > 1 inner updates)
    values: bool = False         # a value model (values with grad, old_values fixed)


CoefficientFn = Callable[..., Coefficients]
COEFFICIENTS: Registry[CoefficientFn] = Registry("gradient coefficient")
_NEEDS: dict[str, Callable[[dict[str, Any]], Needs]] = {}
_OWN_NORMALISATION: set[str] = set()


def register_coefficient(name: str, *, needs: Needs | Callable[[dict[str, Any]], Needs] = Needs(),
                         own_normalisation: bool = False) -> Callable[[CoefficientFn], CoefficientFn]:
    """Register ``fn(inputs, **hparams) -> Coefficients`` under ``name``.

    ``needs`` is a :class:`Needs` or a function of the full hyper-parameter dict (defaults
    filled in) returning one, e.g. the reference is needed only when a KL weight is non-zero.
    ``own_normalisation``: GC is exact as a plain sum over the term's tokens divided by its
    number of samples, under every aggregation (module docstring).
    """

    def decorator(fn: CoefficientFn) -> CoefficientFn:
        COEFFICIENTS.add(name, fn)
        _NEEDS[name] = needs if callable(needs) else (lambda _hp, fixed=needs: fixed)
        if own_normalisation:
            _OWN_NORMALISATION.add(name)
        return fn

    return decorator


def get_coefficient(name: str) -> CoefficientFn:
    """The coefficient registered as ``name`` (:class:`~expo_rl.registry.UnknownNameError` lists the names)."""
    return COEFFICIENTS.get(name)


def resolve_hparams(name: str, hparams: dict[str, Any] | None = None) -> dict[str, Any]:
    """``hparams`` with the function's defaults filled in; unknown keys are an error."""
    params = {k: p for k, p in inspect.signature(get_coefficient(name)).parameters.items()
              if p.kind is inspect.Parameter.KEYWORD_ONLY}
    hparams = dict(hparams or {})
    unknown = sorted(set(hparams) - set(params))
    if unknown:
        raise ValueError(f"gradient coefficient {name!r} has no hyper-parameter(s) {unknown}; "
                         f"allowed: {', '.join(params) or '(none)'}")
    return {k: hparams.get(k, p.default) for k, p in params.items()}


def coefficient_needs(name: str, hparams: dict[str, Any] | None = None) -> Needs:
    return _NEEDS[name](resolve_hparams(name, hparams))


def has_own_normalisation(name: str) -> bool:
    """Whether coefficient ``name`` was registered with ``own_normalisation=True``."""
    get_coefficient(name)
    return name in _OWN_NORMALISATION


# ---------------------------------------------------------------------------------------------
# helpers


def require_input(inputs: CoefficientInputs, field_name: str, method: str) -> torch.Tensor:
    value = getattr(inputs, field_name)
    if value is None:
        raise ValueError(f"gradient coefficient {method!r} needs {field_name} in its inputs")
    return value


def per_token(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[B] -> [B, T] broadcast; [B, T] unchanged."""
    return x.to(like.dtype).unsqueeze(-1).expand_as(like) if x.dim() == 1 else x.to(like.dtype)


def _mask(inputs: CoefficientInputs) -> torch.Tensor:
    return inputs.completion_mask.to(inputs.logprobs.dtype)


def _clipped_surrogate(log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                       clip_eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's ``min(ratio * A, clip(ratio, 1-eps, 1+eps) * A)`` per token (eq. 15).

    Returns (surrogate [B,T], gc [B,T] = ratio * A * 1{not clipped}, clipped [B,T] bool). The
    min picks the clipped branch, whose gradient is 0, exactly when ratio > 1+eps with A > 0
    or ratio < 1-eps with A < 0.
    """
    ratio = torch.exp(log_ratio)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    clipped = ((ratio > 1 + clip_eps) & (advantages > 0)) | ((ratio < 1 - clip_eps) & (advantages < 0))
    clipped = clipped & (mask > 0)
    gc = torch.where(clipped, torch.zeros_like(ratio), ratio * advantages) * mask
    return surrogate * mask, gc, clipped


# ---------------------------------------------------------------------------------------------
# the methods


@register_coefficient("sft")
def sft(inputs: CoefficientInputs) -> Coefficients:
    """SFT (SPEC 2.1, DeepSeekMath eqs. 6-7): ``GC = 1``.

    ``J = E (1/|o|) sum_t log pi_theta(o_t | q, o_<t)``.
    """
    mask = _mask(inputs)
    objective = sequence_mean(inputs.logprobs, mask).mean()
    return Coefficients(mask.clone(), objective.detach(), {"nll": (-masked_mean(inputs.logprobs, mask)).detach()})


@register_coefficient("exp_sft", own_normalisation=True)
def exp_sft(inputs: CoefficientInputs, *, length_normalized: bool = False) -> Coefficients:
    """ExP-SFT (SPEC 3.5, ExPO paper eq. 9): ``GC = 1`` on every token (``1/|o|`` when
    ``length_normalized``), own normalisation over the questions drawn.

    ExP-GRPO adds ``lambda * log pi_theta(c~, a* | q)``, summed over the output tokens, to the
    GRPO objective: ``J = (1/Q) sum_{explanation rows i} sum_t log pi(o_i,t | q_i, o_i,<t)`` with
    ``Q`` the questions the term's source drew this step over all processes (a question without
    a usable explanation, or skipped by ``only_zero_signal``, adds nothing but still counts, so
    lambda's effective size does not change from step to step; without the source's report the
    step counts the rows). The term's weight is lambda. ``length_normalized=True`` gives the
    per-token mean ``(1/|o|) log pi(o|q)`` per row instead. Objective: the mean over this
    micro-batch's rows of ``log pi(o|q)`` (or its per-token mean), without lambda; stats: ``nll``
    (per-token NLL of the explanations) and ``seq_logprob``.
    """
    mask = inputs.completion_mask.to(inputs.logprobs.dtype)
    lengths = sequence_lengths(inputs.completion_mask).to(mask.dtype).clamp(min=1)
    seq_logprob = (inputs.logprobs * mask).sum(-1)
    if length_normalized:
        gc = mask / lengths.unsqueeze(-1)
        objective = (seq_logprob / lengths).mean()
    else:
        gc = mask
        objective = seq_logprob.mean()
    stats = {
        "nll": (-masked_mean(inputs.logprobs, mask)).detach(),
        "seq_logprob": seq_logprob.mean().detach(),
    }
    return Coefficients(gc.detach(), objective.detach(), stats)


@register_coefficient("rft")
def rft(inputs: CoefficientInputs, *, threshold: float = 0.5) -> Coefficients:
    """RFT and online RFT (SPEC 2.2, eqs. 8-11): ``GC = 1{o correct}``, correct = reward >
    ``threshold`` (the verifier reward is 0/1).

    ``J = E 1{o correct} (1/|o|) sum_t log pi_theta(o_t | q, o_<t)``; RFT draws o once from the
    SFT model, online RFT from the current policy: only the data source differs.
    """
    rewards = require_input(inputs, "rewards", "rft")
    mask = _mask(inputs)
    correct = (rewards > threshold).to(mask.dtype)
    objective = (correct * sequence_mean(inputs.logprobs, mask)).mean()
    return Coefficients(per_token(correct, mask) * mask, objective.detach(),
                        {"accuracy": correct.mean().detach()})


@register_coefficient("dpo", needs=Needs(reference=True), own_normalisation=True)
def dpo(inputs: CoefficientInputs, *, beta: float = 0.1, length_normalized: bool = False) -> Coefficients:
    """DPO (SPEC 2.3, eqs. 12-14) on rows paired by ``pair_index`` with ``pair_sign`` +1 (o+) / -1 (o-).

    ``J = E log sigma(beta * lr(o+) - beta * lr(o-))``, ``lr(o) = sum_t (log pi_theta - log pi_ref)``
    (original DPO, the default) or ``(1/|o|) sum_t (...)`` (``length_normalized``: appendix eq. 12).

    ``dJ/d log pi(o+_t) = beta * sigma(beta*lr(o-) - beta*lr(o+)) * c`` and minus that on o-
    tokens, with ``c = 1`` for the summed ratio and ``c = 1/|o|`` for eq. 12 (eq. 14 times
    beta). That is GC: the coefficient has its own normalisation, so the step sums the tokens
    and divides by the number of pairs (the samples of eq. 13's expectation) under every loss
    aggregation.
    """
    ref = require_input(inputs, "ref_logprobs", "dpo")
    pair_index = require_input(inputs, "pair_index", "dpo")
    sign = require_input(inputs, "pair_sign", "dpo").to(inputs.logprobs.dtype)
    mask = _mask(inputs)
    if bool((pair_index < 0).any()) or bool((sign == 0).any()):
        raise ValueError("dpo: every row needs a pair_index >= 0 and a pair_sign of +1 or -1")
    ids, num_pairs = dense_ids(pair_index)
    zeros = torch.zeros(num_pairs, dtype=sign.dtype, device=sign.device)
    if not (torch.equal(zeros.scatter_add(0, ids, (sign > 0).to(sign.dtype)), torch.ones_like(zeros))
            and torch.equal(zeros.scatter_add(0, ids, (sign < 0).to(sign.dtype)), torch.ones_like(zeros))):
        raise ValueError("dpo: every pair_index needs exactly one chosen (+1) and one rejected (-1) row")
    log_ratio = (inputs.logprobs - ref) * mask
    lengths = sequence_lengths(mask).to(mask.dtype)
    seq_ratio = log_ratio.sum(-1) / lengths.clamp(min=1) if length_normalized else log_ratio.sum(-1)
    margin_per_pair = beta * zeros.scatter_add(0, ids, sign * seq_ratio)  # beta*(lr(o+) - lr(o-))
    margin = margin_per_pair[ids]
    weight = beta * torch.sigmoid(-margin) * sign
    if length_normalized:
        weight = weight / lengths.clamp(min=1)  # eq. 12: every token weighs 1/|o|
    objective = F.logsigmoid(margin_per_pair).mean()
    chosen = sign > 0
    stats = {
        "loss": (-objective).detach(),
        "margin": margin_per_pair.mean().detach(),
        "accuracy": (margin_per_pair > 0).to(mask.dtype).mean().detach(),
        "chosen_reward": (beta * seq_ratio[chosen]).mean().detach(),
        "rejected_reward": (beta * seq_ratio[~chosen]).mean().detach(),
    }
    return Coefficients((per_token(weight, mask) * mask).detach(), objective.detach(), stats)


@register_coefficient("ppo", needs=lambda hp: Needs(reference=hp["kl_beta"] != 0, old_logprobs=True, values=True))
def ppo(inputs: CoefficientInputs, *, clip_eps: float = 0.2, kl_beta: float = 0.05, gamma: float = 1.0,
        lam: float = 0.95, value_coef: float = 0.5, value_clip: float = 0.2) -> Coefficients:
    """PPO (SPEC 2.4, eqs. 15-18): ``GC = ratio_t * A_t * 1{not clipped}``.

    ``J = E (1/|o|) sum_t min(ratio_t A_t, clip(ratio_t, 1-eps, 1+eps) A_t)``, ``ratio_t =
    pi_theta/pi_old``. ``A_t`` by GAE(gamma, lam) from the per-token rewards
    ``-kl_beta * (log pi_old - log pi_ref)_t`` + the outcome reward on the last token, and the
    value model's estimates at sampling time (``old_values``); a precomputed ``advantages``
    input overrides the estimator. The value model is fitted to the returns ``R_t = A_t + V_old``
    by the clipped squared error ``value_coef * 0.5 * max((V-R)^2, (V_clip-R)^2)``,
    ``V_clip = V_old + clip(V - V_old, -value_clip, value_clip)`` (``value_clip = 0``: no
    clipping), returned as ``aux_token_loss``.
    """
    mask = _mask(inputs)
    old = inputs.old
    if inputs.advantages is not None:
        advantages = per_token(inputs.advantages, mask) * mask
        returns = None
    else:
        old_values = require_input(inputs, "old_values", "ppo").detach().to(mask.dtype)
        token_rewards = kl_penalised_rewards(require_input(inputs, "rewards", "ppo"), old, inputs.ref_logprobs,
                                             mask, kl_beta=kl_beta)
        advantages, returns = gae(token_rewards, old_values * mask, mask, gamma=gamma, lam=lam)
    surrogate, gc, clipped = _clipped_surrogate(inputs.logprobs - old, advantages, mask, clip_eps)
    stats: dict[str, Stat] = {
        "clip_frac": masked_mean(clipped.to(mask.dtype), mask).detach(),
        "ratio": masked_mean(torch.exp(inputs.logprobs - old), mask).detach(),
        "advantage_mean": masked_mean(advantages, mask).detach(),
    }
    if inputs.ref_logprobs is not None:
        stats["kl"] = masked_mean(old - inputs.ref_logprobs, mask).detach()
    aux = None
    if returns is not None and inputs.values is not None:
        values = inputs.values
        old_values = inputs.old_values.to(values.dtype)
        error = (values - returns) ** 2
        if value_clip > 0:
            clipped_values = old_values + (values - old_values).clamp(-value_clip, value_clip)
            error = torch.maximum(error, (clipped_values - returns) ** 2)
        aux = value_coef * 0.5 * error * mask
        stats["value_loss"] = sequence_mean(0.5 * error.detach(), mask).mean()
        stats["return_mean"] = masked_mean(returns, mask).detach()
    objective = sequence_mean(surrogate, mask).mean()
    return Coefficients(gc.detach(), objective.detach(), stats, aux)


@register_coefficient("grpo", needs=lambda hp: Needs(reference=hp["beta"] != 0, old_logprobs=True))
def grpo(inputs: CoefficientInputs, *, clip_eps: float = 0.2, beta: float = 0.04,
         scale_by_std: bool = True) -> Coefficients:
    """GRPO (SPEC 2.5, eqs. 19-21): ``GC = ratio * A^_i * 1{not clipped} + beta * (pi_ref/pi_theta - 1)``.

    Per question ``J = (1/G) sum_i (1/|o_i|) sum_t [min(ratio A^_i, clip(ratio, 1-eps, 1+eps) A^_i)
    - beta * (pi_ref/pi_theta - log(pi_ref/pi_theta) - 1)]`` (k3 KL estimator per token), with
    ``A^_i = (r_i - mean r) / std r`` over the rows sharing ``group_index`` (0 for a group whose
    rewards are all equal: the std = 0 guard; ``scale_by_std=False`` is Dr. GRPO's ``r - mean``).
    The k3 term's derivative in ``log pi_theta`` is ``pi_ref/pi_theta - 1``, hence the second
    part of GC (eq. 21, whose first part is eq. 20's ``A^`` at ratio 1).
    """
    mask = _mask(inputs)
    stats: dict[str, Stat] = {}
    if inputs.advantages is not None:
        advantages = per_token(inputs.advantages, mask) * mask
    else:
        rewards = require_input(inputs, "rewards", "grpo")
        groups = inputs.group_index if inputs.group_index is not None else torch.zeros_like(rewards, dtype=torch.long)
        grouped = group_advantages(rewards, groups, scale_by_std=scale_by_std)
        advantages = per_token(grouped.advantages, mask) * mask
        stats["zero_signal_groups"] = float(grouped.num_zero_signal_groups)
        stats["groups"] = float(grouped.num_groups)
    surrogate, gc, clipped = _clipped_surrogate(inputs.logprobs - inputs.old, advantages, mask, clip_eps)
    stats["clip_frac"] = masked_mean(clipped.to(mask.dtype), mask).detach()
    stats["ratio"] = masked_mean(torch.exp(inputs.logprobs - inputs.old), mask).detach()
    per_token_objective = surrogate
    if beta != 0:
        log_r = (require_input(inputs, "ref_logprobs", "grpo") - inputs.logprobs) * mask  # log pi_ref/pi_theta
        k3 = (torch.exp(log_r) - log_r - 1) * mask
        per_token_objective = surrogate - beta * k3
        gc = gc + beta * (torch.exp(log_r) - 1) * mask
        stats["kl"] = masked_mean(k3, mask).detach()
    objective = sequence_mean(per_token_objective, mask).mean()
    return Coefficients(gc.detach(), objective.detach(), stats)
