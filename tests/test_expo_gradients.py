"""The ExP-SFT term (SPEC 3.5, ExPO eq. 9) through the shared step, on a tiny float64 model:
its gradient is exactly autograd of ``lambda * log pi(c~, a* | q)`` (summed over tokens, mean
over explanation rows), alone and inside ExP-GRPO next to a GRPO term with ratio != 1."""

import math

import pytest
import torch
from test_engine_step_common import (
    flat_grad,
    plain_logprobs,
    random_batch,
    rel_err,
    seq_mean,
    tiny_model,
)

import expo_rl.expo  # noqa: F401  (registers exp_sft)
from expo_rl.engine.step import batch_normalisers, make_step_term, training_step

TOL = 1e-6
LAMBDA = 0.7


def _grad(model, batch, terms):
    norms = batch_normalisers([batch], terms)
    out = training_step(model, batch, terms, normalisers=norms)
    return flat_grad(model, out.loss), out


def _perturbed(model, seed, scale=0.05):
    other = tiny_model(0)
    other.load_state_dict(model.state_dict())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return other


def test_exp_sft_gradient_is_lambda_times_summed_log_likelihood():
    model = tiny_model(0)
    batch = random_batch([3, 5, 4], [6, 2, 9], seed=1)  # three explanations of different lengths
    grad, out = _grad(model, batch, [make_step_term("exp_sft", weight=LAMBDA)])
    logprobs = plain_logprobs(model, batch)
    objective = LAMBDA * logprobs.sum(-1).mean()  # lambda * mean_i sum_t log pi(o_i,t)
    assert rel_err(grad, flat_grad(model, -objective)) <= TOL
    # the reported objective is the unweighted J; nll is the per-token NLL of the rows (the
    # policy layer returns float32 log-probs, hence the tolerance)
    assert math.isclose(out.stats["exp_sft/objective"].item(), objective.item() / LAMBDA, rel_tol=1e-6)
    mask = batch["completion_mask"]
    nll = -(logprobs * mask).sum() / mask.sum()
    assert math.isclose(out.stats["exp_sft/nll"].item(), nll.item(), rel_tol=1e-6)


def test_length_normalized_exp_sft_is_the_sft_coefficient():
    model = tiny_model(0)
    batch = random_batch([3, 5, 4], [6, 2, 9], seed=2)
    ours, _ = _grad(model, batch, [make_step_term("exp_sft", length_normalized=True)])
    sft, _ = _grad(model, batch, [make_step_term("sft")])
    assert rel_err(ours, sft) <= 1e-12
    expected = flat_grad(model, -seq_mean(plain_logprobs(model, batch), batch["completion_mask"]).mean())
    assert rel_err(ours, expected) <= TOL


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_exp_grpo_gradient_is_grpo_plus_lambda_log_pi(beta):
    """Rows 0-5: two GRPO groups of 3 (term 0); rows 6-7: one explanation per question (term 1).

    J = (1/Q) sum_q [(1/G) sum_i (1/|o_i|) sum_t (min(r A, clip(r) A) - beta k3)
                     + lambda * log pi(c~_q, a*_q | q)]
    with r = pi_theta / pi_old (pi_old a perturbed copy, so some tokens are clipped) and
    A the group-normalised reward (SPEC 2.5).
    """
    model = tiny_model(0)
    old, ref = _perturbed(model, 1), _perturbed(model, 2)
    batch = random_batch([3, 4, 3, 5, 2, 4, 3, 5], [5, 3, 6, 4, 6, 2, 7, 4], seed=3)
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    batch.update(
        rewards=rewards,
        term_index=torch.tensor([0, 0, 0, 0, 0, 0, 1, 1]),
        group_index=torch.tensor([0, 0, 0, 1, 1, 1, -1, -1]),
    )
    with torch.no_grad():
        batch["old_logprobs"] = plain_logprobs(old, batch)
        batch["ref_logprobs"] = plain_logprobs(ref, batch)
    terms = [make_step_term("grpo", clip_eps=0.2, beta=beta), make_step_term("exp_sft", weight=LAMBDA)]
    grad, out = _grad(model, batch, terms)

    mask = batch["completion_mask"].to(torch.float64)
    logprobs = plain_logprobs(model, batch)
    g, e = slice(0, 6), slice(6, 8)
    grouped = rewards[g].view(2, 3)
    advantages = ((grouped - grouped.mean(1, keepdim=True)) / grouped.std(1, keepdim=True)).flatten()
    ratio = torch.exp(logprobs[g] - batch["old_logprobs"][g])
    adv = advantages[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(0.8, 1.2) * adv)
    log_r = batch["ref_logprobs"][g] - logprobs[g]
    k3 = torch.exp(log_r) - log_r - 1
    per_question_grpo = seq_mean(surrogate - beta * k3, mask[g]).view(2, 3).mean(1)
    per_question_sft = (logprobs[e] * mask[e]).sum(-1)
    objective = (per_question_grpo + LAMBDA * per_question_sft).mean()

    assert bool((ratio.clamp(0.8, 1.2) != ratio)[mask[g] > 0].any())  # clipping is exercised
    assert rel_err(grad, flat_grad(model, -objective)) <= TOL
    assert out.stats["grpo/zero_signal_groups"] == 0.0
