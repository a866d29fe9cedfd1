"""Exact gradients of the GRPO-family variants (issue 14): the shared step's gradient equals
autograd of each closed form, in float64 on a tiny model, to relative error <= 1e-6, after one
inner update so ratios differ from 1 and clipping applies. Closed forms are written from the
papers' equations with log-probs from a plain full-logits forward, independent of the package's
advantage code: clip-higher (DAPO eq. 10), overlong filtering (DAPO 3.4), GSPO (eq. 5), RLOO
(leave-one-out baseline), REINFORCE++ (whitened KL-penalised returns)."""

import math

import pytest
import torch
from test_engine_step_common import plain_logprobs, random_batch, seq_mean, tiny_model
from test_engine_step_gradients import COMPLETIONS, PROMPTS, _check, _inner_update

from expo_rl.core.coefficients import CoefficientInputs, get_coefficient
from expo_rl.engine.step import fixed_inputs, make_step_term

REWARDS = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
GROUPS = [0, 0, 0, 1, 1, 1]


def _setup(coefficient, seed, *, reference=True, **hparams):
    model = tiny_model(0)
    batch = random_batch(PROMPTS, COMPLETIONS, seed)
    batch["rewards"] = torch.tensor(REWARDS, dtype=torch.float64)
    batch["group_index"] = torch.tensor(GROUPS)
    terms = [make_step_term(coefficient, **hparams)]
    fixed_inputs(model, batch, terms, reference_model=tiny_model(7) if reference else None)
    return model, batch, terms


def _grpo_adv():
    s = math.sqrt(1 / 3)  # both groups: std of (1, 0, 0) with 1/(n-1)
    return torch.tensor([2 / 3, -1 / 3, -1 / 3, -2 / 3, 1 / 3, 1 / 3], dtype=torch.float64)[:, None] / s


def _clip(ratio, adv, low, high):
    return torch.minimum(ratio * adv, ratio.clamp(1 - low, 1 + high) * adv)


def test_clip_higher_dapo_eq10_after_an_inner_update():
    low, high, beta = 0.1, 0.15, 0.1
    model, batch, terms = _setup("clip_higher", 4, clip_eps_low=low, clip_eps_high=high, beta=beta)
    _inner_update(model, batch, terms, lr=0.05)
    mask, adv = batch["completion_mask"], _grpo_adv()

    def objective():
        logprobs = plain_logprobs(model, batch)
        ratio = torch.exp(logprobs - batch["old_logprobs"])
        log_r = (batch["ref_logprobs"] - logprobs) * mask
        per_token = _clip(ratio, adv, low, high) - beta * (torch.exp(log_r) - log_r - 1)
        return seq_mean(per_token, mask).mean()

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["clip_higher/clip_frac"].item() < 1.0
    # the bounds differ: some tokens with A < 0 sit between 1 - eps_high and 1 - eps_low
    ratio = torch.exp(plain_logprobs(model, batch) - batch["old_logprobs"]).detach()
    assert bool(((ratio < 1 - low) & (ratio > 1 - high) & (mask > 0)).any())


def test_overlong_filtering_drops_the_truncated_rows_gradient():
    low, high = 0.1, 0.15
    model, batch, terms = _setup("clip_higher", 4, reference=False, clip_eps_low=low,
                                 clip_eps_high=high, overlong_filter=True)
    batch["truncated"] = torch.tensor([0, 1, 0, 0, 0, 1])
    keep = torch.tensor([1.0, 0, 1, 1, 1, 0], dtype=torch.float64)
    _inner_update(model, batch, terms, lr=0.05)
    mask, adv = batch["completion_mask"], _grpo_adv()  # truncated rows still count in the group

    def objective():
        ratio = torch.exp(plain_logprobs(model, batch) - batch["old_logprobs"])
        return (keep * seq_mean(_clip(ratio, adv, low, high), mask)).mean()

    out, _ = _check(model, batch, terms, objective)
    assert out.stats["clip_higher/overlong_filtered"] == 2.0


def test_gspo_eq5_sequence_ratio_after_an_inner_update():
    low, high = 0.08, 0.07
    model, batch, terms = _setup("gspo", 4, reference=False, clip_eps_low=low, clip_eps_high=high)
    _inner_update(model, batch, terms, lr=0.05)
    mask, adv = batch["completion_mask"], _grpo_adv()[:, 0]

    def objective():
        log_ratio = (plain_logprobs(model, batch) - batch["old_logprobs"]) * mask
        s = torch.exp(log_ratio.sum(-1) / mask.sum(-1))  # one ratio per sequence
        return _clip(s, adv, low, high).mean()

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["gspo/clip_frac"].item() < 1.0  # some sequences clipped, some not


def test_rloo_leave_one_out_after_an_inner_update():
    eps, beta = 0.05, 0.1
    model, batch, terms = _setup("rloo", 5, clip_eps=eps, beta=beta)
    _inner_update(model, batch, terms, lr=0.05)
    mask = batch["completion_mask"]
    # r_i - mean of the other two: group 0 (1, 0, 0), group 1 (0, 1, 1)
    adv = torch.tensor([1.0, -0.5, -0.5, -1.0, 0.5, 0.5], dtype=torch.float64)[:, None]

    def objective():
        logprobs = plain_logprobs(model, batch)
        log_r = (batch["ref_logprobs"] - logprobs) * mask
        per_token = (_clip(torch.exp(logprobs - batch["old_logprobs"]), adv, eps, eps)
                     - beta * (torch.exp(log_r) - log_r - 1))
        return seq_mean(per_token, mask).mean()

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["rloo/clip_frac"].item() < 1.0


def _reinforce_pp_advantages(batch, kl_beta, baseline):
    """Textbook: r_t = -beta (old - ref)_t (+ outcome at the end), G_t = suffix sum, then
    (G - mean) / sqrt(var + 1e-8) over every completion token of the batch."""
    old, ref, mask = batch["old_logprobs"], batch["ref_logprobs"], batch["completion_mask"]
    rewards = batch["rewards"].tolist()
    if baseline:
        rewards = [r - sum(REWARDS[j] for j in range(6) if GROUPS[j] == GROUPS[i]) / 3
                   for i, r in enumerate(rewards)]
    returns = torch.zeros_like(old)
    values = []
    for i in range(len(PROMPTS)):
        pos = mask[i].nonzero().flatten().tolist()
        r = [-kl_beta * (old[i, t] - ref[i, t]).item() for t in pos]
        r[-1] += rewards[i]
        suffix = [sum(r[k:]) for k in range(len(r))]
        returns[i, pos] = torch.tensor(suffix, dtype=old.dtype)
        values += suffix
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / len(values)
    return (returns - mean) / math.sqrt(var + 1e-8) * mask


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_pp_whitened_returns_after_an_inner_update(baseline):
    eps, kl_beta = 0.05, 0.2
    model, batch, terms = _setup("reinforce_pp", 6, clip_eps=eps, kl_beta=kl_beta, group_baseline=baseline)
    adv = _reinforce_pp_advantages(batch, kl_beta, baseline)
    _inner_update(model, batch, terms, lr=0.05)
    mask = batch["completion_mask"]

    def objective():
        ratio = torch.exp(plain_logprobs(model, batch) - batch["old_logprobs"])
        return seq_mean(_clip(ratio, adv, eps, eps), mask).mean()

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["reinforce_pp/clip_frac"].item() < 1.0


def test_clip_higher_with_equal_bounds_is_grpo():
    model, batch, _ = _setup("grpo", 4, clip_eps=0.05, beta=0.1)
    gen = torch.Generator().manual_seed(0)
    mask = batch["completion_mask"]
    logprobs = batch["old_logprobs"] + 0.1 * torch.randn(mask.shape, generator=gen, dtype=torch.float64) * mask
    inputs = CoefficientInputs(logprobs=logprobs, completion_mask=mask, rewards=batch["rewards"],
                               old_logprobs=batch["old_logprobs"], ref_logprobs=batch["ref_logprobs"],
                               group_index=batch["group_index"])
    grpo = get_coefficient("grpo")(inputs, clip_eps=0.05, beta=0.1)
    higher = get_coefficient("clip_higher")(inputs, clip_eps_low=0.05, clip_eps_high=0.05, beta=0.1)
    torch.testing.assert_close(higher.gc, grpo.gc, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(higher.objective, grpo.objective, rtol=1e-12, atol=1e-12)
    dr = get_coefficient("clip_higher")(inputs, clip_eps_low=0.05, clip_eps_high=0.05, beta=0.1,
                                        advantage="dr_grpo")
    torch.testing.assert_close(dr.gc, get_coefficient("grpo")(inputs, clip_eps=0.05, beta=0.1,
                                                              scale_by_std=False).gc)


def test_unknown_advantage_estimator_fails_at_set_up():
    with pytest.raises(ValueError, match="advantage: 'gae' is not allowed; allowed values: grpo, dr_grpo, rloo"):
        make_step_term("clip_higher", advantage="gae")
