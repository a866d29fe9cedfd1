"""Exact gradients (issue 4, "done when"): for every method, the gradient of the shared step
``-sum GC * log pi / D`` equals autograd of the method's closed-form objective (DeepSeekMath
eqs. 6, 8, 11, 12, 15, 19), on a tiny random float64 transformers model, to relative error
<= 1e-6. The closed forms below are written from the equations, with log-probs from a plain
full-logits forward (test_engine_step_common.plain_logprobs), independent of the package's code
except where stated. PPO and GRPO are checked after one inner update, so ratio != 1 and some
tokens are clipped."""

import math

import pytest
import torch
import torch.nn.functional as F
from test_engine_step_common import (
    flat_grad,
    plain_logprobs,
    random_batch,
    rel_err,
    seq_mean,
    tiny_model,
)

from expo_rl.engine.step import (
    batch_normalisers,
    fixed_inputs,
    make_step_term,
    prepare_model,
    training_step,
)
from expo_rl.engine.value import find_value_head

TOL = 1e-6
PROMPTS = [3, 5, 2, 4, 6, 3]
COMPLETIONS = [4, 2, 6, 5, 3, 7]


def _step_grad(model, batch, terms, aggregation="seq_mean", params=None):
    norms = batch_normalisers([batch], terms, aggregation=aggregation)
    out = training_step(model, batch, terms, normalisers=norms, aggregation=aggregation)
    return flat_grad(model, out.loss, params), out


def _check(model, batch, terms, closed_form_objective, params=None):
    """The step's gradient vs -grad J; also the reported objective vs J's value."""
    step_grad, out = _step_grad(model, batch, terms, params=params)
    objective = closed_form_objective()
    expected = flat_grad(model, -objective, params)
    assert rel_err(step_grad, expected) <= TOL, rel_err(step_grad, expected)
    return out, objective


def test_completion_logprobs_matches_the_plain_computation():
    from expo_rl.policy import completion_logprobs

    model, batch = tiny_model(0), random_batch(PROMPTS, COMPLETIONS, 1)
    ours = completion_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    # the policy layer returns float32 log-probs (it upcasts bf16 logits); compare at that precision
    torch.testing.assert_close(ours.to(torch.float64), plain_logprobs(model, batch), rtol=1e-6, atol=1e-6)


def test_sft_eq6():
    model, batch = tiny_model(0), random_batch(PROMPTS, COMPLETIONS, 1)
    mask = batch["completion_mask"]
    out, j = _check(model, batch, [make_step_term("sft")],
                    lambda: seq_mean(plain_logprobs(model, batch), mask).mean())
    assert math.isclose(out.stats["sft/objective"].item(), j.item(), rel_tol=1e-6)


def test_rft_eq8():
    """RFT: o sampled once from the frozen SFT model; the rows here stand for those samples."""
    model, batch = tiny_model(0), random_batch(PROMPTS, COMPLETIONS, 2)
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    batch["rewards"] = rewards
    _check(model, batch, [make_step_term("rft")],
           lambda: (rewards * seq_mean(plain_logprobs(model, batch), batch["completion_mask"])).mean())


def _sample(model, prompts: torch.Tensor, new_tokens: int, seed: int) -> torch.Tensor:
    """Ancestral sampling from the current policy (full forward per token: tiny model)."""
    gen = torch.Generator().manual_seed(seed)
    ids = prompts
    with torch.no_grad():
        for _ in range(new_tokens):
            probs = torch.softmax(model(input_ids=ids).logits[:, -1], -1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], 1)
    return ids


def test_online_rft_eq11():
    """Online RFT: o sampled from the current policy, rewarded by a rule (contains token 7)."""
    model = tiny_model(3)
    prompts = torch.randint(3, 48, (6, 4), generator=torch.Generator().manual_seed(4))
    ids = _sample(model, prompts, 5, seed=5)
    completion = torch.zeros_like(ids)
    completion[:, 4:] = 1
    rewards = ((ids[:, 4:] < 24).sum(-1) >= 3).to(torch.float64)
    assert 0 < rewards.sum() < 6  # some right, some wrong
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": completion,
             "rewards": rewards}
    _check(model, batch, [make_step_term("rft")],
           lambda: (rewards * seq_mean(plain_logprobs(model, batch), completion)).mean())


@pytest.mark.parametrize("length_normalized", [False, True])
def test_dpo_eq12(length_normalized):
    model, reference = tiny_model(0), tiny_model(7)
    batch = random_batch(PROMPTS, COMPLETIONS, 3)
    batch["pair_index"] = torch.tensor([0, 0, 1, 1, 2, 2])
    batch["pair_sign"] = torch.tensor([1, -1, -1, 1, 1, -1])
    mask, beta = batch["completion_mask"], 0.5
    terms = [make_step_term("dpo", beta=beta, length_normalized=length_normalized)]
    fixed_inputs(model, batch, terms, reference_model=reference)

    def objective():
        ratio = ((plain_logprobs(model, batch) - plain_logprobs(reference, batch)) * mask).sum(-1)
        if length_normalized:  # eq. 12 averages the log ratio over |o|
            ratio = ratio / mask.sum(-1)
        margin = beta * (ratio[[0, 3, 4]] - ratio[[1, 2, 5]])  # chosen - rejected, per pair
        return F.logsigmoid(margin).mean()

    out, j = _check(model, batch, terms, objective)
    assert math.isclose(out.stats["dpo/loss"].item(), -j.item(), rel_tol=1e-6)


def _inner_update(model, batch, terms, lr):
    """One SGD step with the shared step's own gradient: pi_theta moves away from pi_old."""
    norms = batch_normalisers([batch], terms)
    loss = training_step(model, batch, terms, normalisers=norms).loss
    grads = torch.autograd.grad(loss, [p for p in model.parameters()])
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p -= lr * g / (g.norm() + 1e-12)


def _clipped_surrogate(logprobs, old, adv, eps):
    ratio = torch.exp(logprobs - old)
    return torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)


def test_grpo_eq19_after_an_inner_update():
    model, reference = tiny_model(0), tiny_model(7)
    batch = random_batch(PROMPTS, COMPLETIONS, 4)
    batch["rewards"] = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    batch["group_index"] = torch.tensor([0, 0, 0, 1, 1, 1])
    mask, eps, beta = batch["completion_mask"], 0.05, 0.1
    terms = [make_step_term("grpo", clip_eps=eps, beta=beta)]
    fixed_inputs(model, batch, terms, reference_model=reference)  # pi_old = the sampler, pi_ref
    _inner_update(model, batch, terms, lr=0.05)
    # group 0: rewards (1, 0, 0): mean 1/3, std sqrt(1/3); group 1: (0, 1, 1): mean 2/3, std sqrt(1/3)
    s = math.sqrt(1 / 3)
    adv = torch.tensor([2 / 3, -1 / 3, -1 / 3, -2 / 3, 1 / 3, 1 / 3], dtype=torch.float64)[:, None] / s

    def objective():
        logprobs = plain_logprobs(model, batch)
        log_r = (batch["ref_logprobs"] - logprobs) * mask  # log pi_ref / pi_theta
        per_token = (_clipped_surrogate(logprobs, batch["old_logprobs"], adv, eps)
                     - beta * (torch.exp(log_r) - log_r - 1))
        return seq_mean(per_token, mask).mean()

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["grpo/clip_frac"].item() < 1.0  # some tokens clipped, some not
    assert out.stats["grpo/ratio"].item() != 1.0


def _gae_loop(rewards, values, gamma, lam):
    out, running, next_value = [0.0] * len(rewards), 0.0, 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * next_value - values[t] + gamma * lam * running
        out[t], next_value = running, values[t]
    return out


def test_ppo_eq15_after_an_inner_update():
    model, reference = tiny_model(0), tiny_model(7)
    prepare_model(model, [make_step_term("ppo")])
    head = find_value_head(model)
    with torch.no_grad():  # a non-zero critic, so the value loss and GAE are not trivial
        head.out.weight.normal_(0, 0.5)
    batch = random_batch(PROMPTS, COMPLETIONS, 5)
    batch["rewards"] = torch.tensor([1.0, 0.0, 0.3, 0.0, 1.0, 0.6], dtype=torch.float64)
    mask = batch["completion_mask"]
    eps, kl_beta, gamma, lam, vcoef, vclip = 0.05, 0.1, 0.9, 0.8, 0.5, 0.02
    terms = [make_step_term("ppo", clip_eps=eps, kl_beta=kl_beta, gamma=gamma, lam=lam,
                            value_coef=vcoef, value_clip=vclip)]
    fixed_inputs(model, batch, terms, reference_model=reference)
    old, ref, old_values = batch["old_logprobs"], batch["ref_logprobs"], batch["old_values"]
    assert old_values.abs().sum() > 0

    # advantages and returns, per row with a textbook loop: r_t = -beta*(old - ref)_t + outcome at the end
    adv = torch.zeros_like(old)
    for i in range(len(PROMPTS)):
        pos = mask[i].nonzero().flatten().tolist()
        r = [(-kl_beta * (old[i, t] - ref[i, t])).item() for t in pos]
        r[-1] += batch["rewards"][i].item()
        adv[i, pos] = torch.tensor(_gae_loop(r, old_values[i, pos].tolist(), gamma, lam), dtype=old.dtype)
    returns = adv + old_values * mask

    _inner_update(model, batch, terms, lr=0.05)

    def values_now():  # the head on the decoder's final hidden states (detached), V(q, o_<t)
        hidden = model.get_decoder()(input_ids=batch["input_ids"],
                                     attention_mask=batch["attention_mask"]).last_hidden_state
        v = head(hidden.detach())
        return torch.cat([torch.zeros_like(v[:, :1]), v[:, :-1]], 1)

    def objective():
        surrogate = seq_mean(_clipped_surrogate(plain_logprobs(model, batch), old, adv, eps), mask).mean()
        v = values_now()
        v_clip = old_values + (v - old_values).clamp(-vclip, vclip)
        value_loss = 0.5 * torch.maximum((v - returns) ** 2, (v_clip - returns) ** 2)
        return surrogate - vcoef * seq_mean(value_loss, mask).mean()  # J minus the critic's loss

    out, _ = _check(model, batch, terms, objective)
    assert 0.0 < out.stats["ppo/clip_frac"].item() < 1.0
    # the policy parameters see only the surrogate (eq. 15): the head reads detached features
    policy = [p for n, p in model.named_parameters() if "value_head" not in n]
    surrogate_only = flat_grad(model, -seq_mean(_clipped_surrogate(plain_logprobs(model, batch), old, adv, eps),
                                                mask).mean(), policy)
    assert rel_err(_step_grad(model, batch, terms, params=policy)[0], surrogate_only) <= TOL


def test_exp_grpo_two_terms_in_one_batch():
    """ExP-GRPO (SPEC 3.5): GRPO rows + an SFT term with weight lambda on explanation rows."""
    model, reference = tiny_model(0), tiny_model(7)
    batch = random_batch(PROMPTS + [4, 2], COMPLETIONS + [5, 6], 6)
    batch["rewards"] = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    batch["group_index"] = torch.tensor([0, 0, 0, 1, 1, 1, -1, -1])
    batch["term_index"] = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1])
    lam, beta = 0.7, 0.04
    terms = [make_step_term("grpo", beta=beta), make_step_term("sft", name="exp_sft", weight=lam)]
    fixed_inputs(model, batch, terms, reference_model=reference)
    mask = batch["completion_mask"]
    s = math.sqrt(1 / 3)
    # group 0 all wrong (zero signal), group 1 = (1, 0, 1): mean 2/3, std sqrt(1/3)
    adv = torch.tensor([0, 0, 0, 1 / 3, -2 / 3, 1 / 3], dtype=torch.float64)[:, None] / s

    def objective():
        logprobs = plain_logprobs(model, batch)
        g, e = slice(0, 6), slice(6, 8)
        log_r = (batch["ref_logprobs"][g] - logprobs[g]) * mask[g]
        grpo = seq_mean(_clipped_surrogate(logprobs[g], logprobs[g].detach(), adv, 0.2)
                        - beta * (torch.exp(log_r) - log_r - 1), mask[g]).mean()
        return grpo + lam * seq_mean(logprobs[e], mask[e]).mean()

    out, _ = _check(model, batch, terms, objective)
    assert out.stats["grpo/zero_signal_groups"] == 1
    assert set(out.objectives) == {"grpo", "exp_sft"}
