"""Learning (issue 4, "done when"): on a toy task, each method improves its own objective within
a few dozen steps of the shared step on CPU, in seconds.

The task: 4 prompts of 3 tokens; the policy writes 2 tokens from a vocabulary of 16; the reward
is 1 when the prompt's target token appears in the completion (a random model: ~2/16). With
256 possible completions per prompt, the expected reward E_{o ~ pi}[r] is computed exactly by
enumeration, so no sampling noise enters the learning check. The loop is a minimal one (plain
AdamW); the real runtime is expo_rl.engine.runtime.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2Config, Qwen2ForCausalLM

from expo_rl.engine.step import (
    batch_normalisers,
    fixed_inputs,
    make_step_term,
    prepare_model,
    training_step,
)
from expo_rl.policy import completion_logprobs

V, NEW = 16, 2
PROMPTS = torch.tensor([[3, 4, 5], [6, 7, 8], [9, 10, 11], [12, 13, 14]])
TARGETS = torch.tensor([4, 9, 13, 6])
ALL = torch.tensor(list(itertools.product(range(V), repeat=NEW)))  # [256, 2] every completion


def _model(seed=0):
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                         tie_word_embeddings=False)
    return Qwen2ForCausalLM(config).train()


def _batch(prompt_rows, completions):
    ids = torch.cat([PROMPTS[prompt_rows], completions], 1)
    mask = torch.zeros_like(ids)
    mask[:, PROMPTS.shape[1]:] = 1
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "completion_mask": mask}


def _reward(prompt_rows, completions):
    return (completions == TARGETS[prompt_rows, None]).any(-1).float()


@torch.no_grad()
def expected_reward(model):
    """E_{o ~ pi(.|q)}[r(q, o)], exactly, averaged over the prompts."""
    rows = torch.arange(len(PROMPTS)).repeat_interleave(len(ALL))
    completions = ALL.repeat(len(PROMPTS), 1)
    b = _batch(rows, completions)
    probs = completion_logprobs(model, b["input_ids"], b["attention_mask"], b["completion_mask"]).sum(-1).exp()
    return float((probs * _reward(rows, completions)).sum() / len(PROMPTS))


@torch.no_grad()
def _sample(model, per_prompt, seed):
    gen = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(PROMPTS)).repeat_interleave(per_prompt)
    ids = PROMPTS[rows]
    for _ in range(NEW):
        probs = torch.softmax(model(input_ids=ids).logits[:, -1].float(), -1)
        ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], 1)
    return rows, ids[:, PROMPTS.shape[1]:]


def _train(model, terms, make_batch, *, steps, mu=1, lr=1e-2, reference=None):
    prepare_model(model, terms)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    for step in range(steps):
        batch = make_batch(step)
        fixed_inputs(model, batch, terms, reference_model=reference)
        norms = batch_normalisers([batch], terms)
        for _ in range(mu):
            out = training_step(model, batch, terms, normalisers=norms)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return out


def _objective(model, batch, terms, reference=None):
    """The term's own objective J at the current parameters, as the step reports it."""
    batch = {k: v for k, v in batch.items() if k not in ("old_logprobs", "old_values")}
    fixed_inputs(model, batch, terms, reference_model=reference)
    with torch.no_grad():
        out = training_step(model, batch, terms, normalisers=batch_normalisers([batch], terms))
    return float(out.objectives[terms[0].name])


def test_sft_raises_the_likelihood_of_the_data():
    model = _model()
    batch = _batch(torch.arange(4), TARGETS[:, None].repeat(1, NEW))
    terms = [make_step_term("sft")]
    before = _objective(model, batch, terms)
    _train(model, terms, lambda _s: dict(batch), steps=12)
    after = _objective(model, batch, terms)
    # mean log-likelihood per token: from ~log(1/16) = -2.8 to near 0
    assert after > before + 1.5 and after > -1.0, (before, after)


def test_rft_fits_the_correct_frozen_samples():
    model = _model()
    rows, completions = _sample(model, 16, seed=1)  # sampled once from the initial ("SFT") model
    batch = _batch(rows, completions)
    batch["rewards"] = _reward(rows, completions)
    assert 0 < batch["rewards"].sum() < len(rows)
    terms = [make_step_term("rft")]
    before, reward_before = _objective(model, batch, terms), expected_reward(model)
    _train(model, terms, lambda _s: dict(batch), steps=12)
    # J = mean of 1{correct} * (mean log-likelihood); its maximum is 0 (correct samples certain)
    assert _objective(model, batch, terms) > 0.25 * before
    assert expected_reward(model) > reward_before + 0.2


def _on_policy(model, per_prompt):
    def make(step):
        rows, completions = _sample(model, per_prompt, seed=100 + step)
        batch = _batch(rows, completions)
        batch["rewards"] = _reward(rows, completions)
        batch["group_index"] = rows
        return batch
    return make


@pytest.mark.parametrize("method, mu, hparams", [
    pytest.param("rft", 1, {}, id="online_rft"),
    pytest.param("grpo", 2, {"clip_eps": 0.2, "beta": 0.02}, id="grpo"),
    pytest.param("ppo", 2, {"clip_eps": 0.2, "kl_beta": 0.02, "gamma": 1.0, "lam": 0.95}, id="ppo"),
])
def test_online_methods_raise_the_expected_reward(method, mu, hparams):
    model, reference = _model(), _model()
    terms = [make_step_term(method, **hparams)]
    before = expected_reward(model)
    out = _train(model, terms, _on_policy(model, 8), steps=12, mu=mu, reference=reference)
    after = expected_reward(model)
    assert after > before + 0.25, (before, after)
    if mu > 1:  # the inner update moved the ratio away from 1
        assert out.stats[f"{method}/ratio"].item() != 1.0


def test_dpo_raises_its_objective_on_the_pairs():
    model, reference = _model(), _model()
    gen = torch.Generator().manual_seed(3)
    chosen = torch.stack([TARGETS, torch.randint(0, V, (4,), generator=gen)], 1)
    rejected = (TARGETS[:, None] + 1 + torch.randint(0, V - 1, (4, NEW), generator=gen)) % V  # never the target
    rows = torch.arange(4).repeat_interleave(2)
    completions = torch.stack([chosen, rejected], 1).reshape(8, NEW)
    batch = _batch(rows, completions)
    batch["pair_index"], batch["pair_sign"] = rows, torch.tensor([1, -1]).repeat(4)
    terms = [make_step_term("dpo", beta=0.5)]
    before = _objective(model, batch, terms, reference)
    _train(model, terms, lambda _s: dict(batch), steps=12, reference=reference)
    after = _objective(model, batch, terms, reference)
    # log sigma(0) = -0.69 at the start (policy = reference); the margin must grow
    assert before == pytest.approx(F.logsigmoid(torch.tensor(0.0)).item(), abs=1e-5)
    assert after > before + 0.4, (before, after)
