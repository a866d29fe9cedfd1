"""The step's log-probs are at the sampling temperature (issue 11): samples drawn at T are
scored at T, so the old log-probs are the sampler's own (log_softmax(warp_T(logits)) on the
sampled ids), the GRPO ratio is exactly 1 at the first inner update, and the KL compares the
tempered policy with the tempered reference. Runs without a sampling term score at T = 1."""

from types import SimpleNamespace

import pytest
import torch

from expo_rl.engine.batching import pack, split_micro_batches, tag_rows
from expo_rl.engine.config import load_config
from expo_rl.engine.runtime import (
    add_fixed_inputs,
    collect_rows,
    make_accelerator,
    normalisers,
    setup,
    step_temperature,
)
from expo_rl.engine.step import training_step
from expo_rl.policy.sampling import _warpers

T = 0.6


def _tempered(model, batch, warp):
    """log_softmax(warp(logits)) at every completion position, with a plain full forward."""
    ids = batch["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits.float()[:, :-1]
    rows, width, vocab = logits.shape
    scores = logits.reshape(-1, vocab)
    for w in warp:
        scores = w(None, scores)
    picked = torch.log_softmax(scores, -1).gather(-1, ids[:, 1:].reshape(-1, 1)).reshape(rows, width)
    return torch.cat([torch.zeros_like(picked[:, :1]), picked], 1) * batch["completion_mask"]


def test_grpo_step_scores_at_the_sampling_temperature(tmp_path):
    config = load_config("grpo", [f"sampling.temperature={T}", "train.progress=false", "train.tensorboard=false",
                                  f"train.output_dir={tmp_path}"])
    run = setup(config, make_accelerator(config))
    assert run.temperature == T and config.train.mu == 2
    rows_per_term = collect_rows(run, 1)
    pad = run.tokenizer.pad_token_id
    [batch] = [pack(rows, pad_id=pad, device=run.accelerator.device)
               for rows in split_micro_batches(tag_rows(rows_per_term), 1)]
    add_fixed_inputs(run, batch)
    mask = batch["completion_mask"].bool()

    # the old log-probs are the sampler's own: its warpers (temperature T, top_p 1) on the logits
    sampler = _tempered(run.model, batch, _warpers(T, config.sampling.top_p))
    assert (batch["old_logprobs"] - sampler)[mask].abs().max().item() <= 1e-5
    untempered = _tempered(run.model, batch, [])
    assert (batch["old_logprobs"] - untempered)[mask].abs().max().item() > 1e-2
    # the reference (the KL's other side) is tempered too
    with run.frozen.reference() as reference_model:
        reference = _tempered(reference_model, batch, _warpers(T, 1.0))
    assert (batch["ref_logprobs"] - reference)[mask].abs().max().item() <= 1e-5

    out = training_step(run.model, batch, run.step_terms, normalisers=normalisers(run, [batch]),
                        aggregation=config.train.loss_aggregation, temperature=run.temperature)
    assert out.stats["grpo/ratio"].item() == pytest.approx(1.0, abs=1e-6)
    assert out.stats["grpo/kl"].item() == pytest.approx(0.0, abs=1e-6)  # pi_theta = pi_ref at step 1


def test_one_temperature_per_step_rule():
    sampling, fixed = SimpleNamespace(samples_current_policy=True), SimpleNamespace()
    assert step_temperature(0.9, [fixed, sampling]) == 0.9
    assert step_temperature(0.9, [fixed]) == 1.0        # SFT, offline DPO: the model's own distribution
    assert step_temperature(0.0, [sampling]) == 1.0     # greedy sampling has no tempered distribution
