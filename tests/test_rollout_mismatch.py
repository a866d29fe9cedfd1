"""Sampler/trainer mismatch metrics and truncated importance sampling (issue 12), in float64 with
hand-derived values; and the step multiplies every term's gradient coefficient by ``tis_weight``."""

from __future__ import annotations

import math

import torch
from test_engine_step_common import (
    flat_grad,
    plain_logprobs,
    random_batch,
    rel_err,
    seq_mean,
    tiny_model,
)

from expo_rl.core.mismatch import mismatch_stats, tis_weights
from expo_rl.engine.batching import TaggedRow, pack
from expo_rl.engine.rollouts import apply_sampler_correction, sampler_metrics
from expo_rl.engine.step import batch_normalisers, make_step_term, training_step
from expo_rl.sources import Row

P = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], dtype=torch.float64)
Q = torch.tensor([[-1.5, -1.0, 9.0], [-0.5, 9.0, 9.0]], dtype=torch.float64)
M = torch.tensor([[1, 1, 0], [1, 0, 0]])


def test_mismatch_stats_closed_form():
    stats = mismatch_stats(P, Q, M)
    d = [0.5, -1.0, 0.0]  # log p - log q on the three masked tokens
    assert math.isclose(float(stats["logprob_abs_diff"]), 1.5 / 3, rel_tol=1e-12)
    k3 = sum(math.exp(x) - 1 - x for x in d) / 3
    assert math.isclose(float(stats["kl"]), k3, rel_tol=1e-12)
    assert float(stats["logprob_max_abs_diff"]) == 1.0
    same = mismatch_stats(P, P, M)
    assert float(same["kl"]) == 0.0 and float(same["logprob_abs_diff"]) == 0.0


def test_tis_weights_truncate_and_leave_other_tokens_alone():
    w = tis_weights(P, Q, M, cap=1.5)
    expected = torch.tensor([[1.5, math.exp(-1.0), 1.0], [1.0, 1.0, 1.0]])
    torch.testing.assert_close(w, expected.float(), rtol=1e-6, atol=0)


def test_packed_sampler_logprobs_and_step_metrics():
    rows = [TaggedRow(Row([5, 6], [7, 8], "a", "1", sampler_logprobs=[-1.0, -2.0]), 0, 0, -1),
            TaggedRow(Row([5], [9, 10, 11], "b", "1"), 0, 1, -1)]  # e.g. an SFT row: no sampler log-probs
    batch = pack(rows, pad_id=0, device=torch.device("cpu"))
    assert batch["sampler_mask"].tolist() == [[False, False, True, True], [False, False, False, False]]
    assert batch["sampler_logprobs"][0, 2:].tolist() == [-1.0, -2.0]
    batch["old_logprobs"] = torch.zeros(2, 4)
    batch["old_logprobs"][0, 2:] = torch.tensor([-1.5, -2.0])
    apply_sampler_correction(batch, tis_cap=2.0)
    assert torch.allclose(batch["tis_weight"][0, 2:], torch.tensor([math.exp(-0.5), 1.0]))
    assert bool((batch["tis_weight"][1] == 1).all())
    metrics = sampler_metrics([batch], tis_cap=2.0)
    assert math.isclose(metrics["sampler/logprob_abs_diff"], 0.25, rel_tol=1e-6)
    assert metrics["sampler/tis_clip_frac"] == 0.0


def test_step_gradient_scales_with_tis_weight():
    """SFT term, seq_mean: J = mean_i seq_mean_t(w_it log pi_it) when gc = 1 is multiplied by w."""
    model = tiny_model(0)
    batch = random_batch([3, 4], [4, 3], seed=0)
    batch["rewards"] = torch.zeros(2, dtype=torch.float64)
    weight = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    batch["tis_weight"] = weight + 0.5
    terms = [make_step_term("sft", name="sft")]
    norms = batch_normalisers([batch], terms)
    out = training_step(model, batch, terms, normalisers=norms)
    got = flat_grad(model, out.loss)
    mask = batch["completion_mask"].double()
    objective = seq_mean(batch["tis_weight"] * plain_logprobs(model, batch), mask).mean()
    assert rel_err(got, flat_grad(model, -objective)) <= 1e-6


def test_hf_engine_is_the_built_in_sampler():
    from expo_rl.policy import load_policy, sample
    from expo_rl.rollout import SamplingSettings, make_engine

    model, tokenizer = load_policy("tiny:qwen2")
    model.train()
    engine = make_engine("hf", model, tokenizer, SamplingSettings(temperature=1.0, max_new_tokens=8))
    got = engine.sample(model, ["a", "bb"], n=2, seed=3)
    expected = sample(model, tokenizer, ["a", "bb"], n=2, temperature=1.0, max_new_tokens=8, seed=3)
    assert got.completion_ids == expected.completion_ids and got.logprobs is None
    assert model.training  # restored
