"""Terms that define their own normalisation (issue 11, item 2): ``dpo`` and ``exp_sft`` are
exact under every loss aggregation, and the ExP-SFT term's denominator is the number of
questions its source drew (issue 11, item 2: dropped explanations or ``only_zero_signal`` do
not change the effective lambda). Float64 tiny model, closed forms written from the equations
(DPO eqs. 12-14, ExPO eq. 9 / SPEC 3.5), log-probs from a plain full-logits forward."""

import pytest
import torch
import torch.nn.functional as F
from test_engine_step_common import flat_grad, plain_logprobs, random_batch, rel_err, tiny_model

import expo_rl.expo  # noqa: F401  (registers exp_sft)
from expo_rl.engine.step import batch_normalisers, fixed_inputs, make_step_term, training_step

TOL = 1e-6
AGGREGATIONS = ["seq_mean", "token_mean", "constant"]
LAMBDA = 0.7


def _rows(batch, rows):
    index = torch.tensor(rows)
    return {k: v.index_select(0, index) for k, v in batch.items()}


def _grad(model, micro_batches, terms, aggregation, samples=None):
    norms = batch_normalisers(micro_batches, terms, aggregation=aggregation, constant_length=16,
                              samples=samples)
    return sum(flat_grad(model, training_step(model, mb, terms, normalisers=norms,
                                              aggregation=aggregation).loss) for mb in micro_batches)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("length_normalized", [False, True])
def test_dpo_is_exact_under_every_aggregation(aggregation, length_normalized):
    model, reference = tiny_model(0), tiny_model(7)
    batch = random_batch([3, 5, 2, 4, 6, 3], [4, 2, 6, 5, 3, 7], 3)
    batch["pair_index"] = torch.tensor([0, 0, 1, 1, 2, 2])
    batch["pair_sign"] = torch.tensor([1, -1, -1, 1, 1, -1])
    mask, beta = batch["completion_mask"], 0.5
    terms = [make_step_term("dpo", beta=beta, length_normalized=length_normalized)]
    fixed_inputs(model, batch, terms, reference_model=reference)

    ratio = ((plain_logprobs(model, batch) - plain_logprobs(reference, batch).detach()) * mask).sum(-1)
    if length_normalized:
        ratio = ratio / mask.sum(-1)
    objective = F.logsigmoid(beta * (ratio[[0, 3, 4]] - ratio[[1, 2, 5]])).mean()  # mean over pairs
    expected = flat_grad(model, -objective)
    assert rel_err(_grad(model, [batch], terms, aggregation), expected) <= TOL
    # and over micro-batches of whole pairs
    micro = [_rows(batch, [0, 1]), _rows(batch, [2, 3, 4, 5])]
    assert rel_err(_grad(model, micro, terms, aggregation), expected) <= TOL


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("length_normalized", [False, True])
def test_exp_sft_is_lambda_sum_log_pi_over_questions_under_every_aggregation(aggregation, length_normalized):
    """J = (lambda / Q) sum_{rows} sum_t log pi (or the per-token mean per row), Q = questions
    the source drew (5 here: two of them gave no explanation row)."""
    model = tiny_model(0)
    batch = random_batch([3, 5, 4], [6, 2, 9], seed=1)
    mask = batch["completion_mask"].to(torch.float64)
    terms = [make_step_term("exp_sft", weight=LAMBDA, length_normalized=length_normalized)]
    per_row = (plain_logprobs(model, batch) * mask).sum(-1)
    if length_normalized:
        per_row = per_row / mask.sum(-1)
    expected = flat_grad(model, -LAMBDA * per_row.sum() / 5)
    assert rel_err(_grad(model, [batch], terms, aggregation, samples=[5]), expected) <= TOL
    micro = [_rows(batch, [0]), _rows(batch, [1, 2])]
    assert rel_err(_grad(model, micro, terms, aggregation, samples=[5]), expected) <= TOL


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_a_dropped_explanation_leaves_the_other_rows_gradient_unchanged(aggregation):
    """Q = 3 questions drawn; the third explanation is dropped (or gated by only_zero_signal):
    the remaining rows keep exactly their gradient, lambda * grad log pi(o_i) / 3."""
    model = tiny_model(0)
    batch = random_batch([3, 5, 4], [6, 2, 9], seed=4)
    mask = batch["completion_mask"].to(torch.float64)
    terms = [make_step_term("exp_sft", weight=LAMBDA)]
    def per_row():
        return (plain_logprobs(model, batch) * mask).sum(-1)

    full = _grad(model, [batch], terms, aggregation, samples=[3])
    dropped = _grad(model, [_rows(batch, [0, 1])], terms, aggregation, samples=[3])
    assert rel_err(dropped, flat_grad(model, -LAMBDA * per_row()[:2].sum() / 3)) <= TOL
    assert rel_err(full - dropped, flat_grad(model, -LAMBDA * per_row()[2] / 3)) <= TOL


def test_sample_counts_are_summed_over_processes_and_default_to_the_rows():
    batch = random_batch([3, 5, 4, 2], [6, 2, 9, 3], seed=5)
    batch["term_index"] = torch.tensor([0, 0, 1, 1])
    terms = [make_step_term("sft"), make_step_term("exp_sft", weight=LAMBDA)]
    assert batch_normalisers([batch], terms).per_term == (2.0, 2.0)
    assert batch_normalisers([batch], terms, samples=[None, 6]).per_term == (2.0, 6.0)
    assert batch_normalisers([batch], terms, aggregation="constant", constant_length=4,
                             samples=[None, 6]).per_term == (8.0, 6.0)  # exp_sft: no C
    summed = batch_normalisers([batch], terms, samples=[None, 6], num_processes=2,
                               sum_over_processes=lambda t: 2 * t)
    assert summed.per_term == (4.0, 12.0) and summed.scale == 2.0
    with pytest.raises(ValueError, match="2 terms"):
        batch_normalisers([batch], terms, samples=[1])


def test_the_runtime_normalises_the_exp_sft_term_by_the_questions_drawn(tmp_path, monkeypatch):
    """ExP-GRPO through ``expo-rl train``: with only_zero_signal the explanation rows vary, the
    ExP-SFT term's sample count is the questions its source drew (2 per step) all the same."""
    from expo_rl.engine import runtime
    from expo_rl.engine.config import load_config

    seen = []

    def spy(micro_batches, step_terms, **kwargs):
        seen.append(kwargs["samples"])
        return batch_normalisers(micro_batches, step_terms, **kwargs)

    monkeypatch.setattr(runtime, "batch_normalisers", spy)
    config = load_config("exp_grpo", ["train.steps=2", "train.progress=false", "train.tensorboard=false",
                                      "terms.1.source_args.only_zero_signal=true",
                                      f"train.output_dir={tmp_path}"])
    runtime.train(config)
    assert seen == [[None, 2], [None, 2]]
