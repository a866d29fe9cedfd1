"""Loss aggregation and gradient accumulation in the shared step: micro-batches (and
processes) with normalisers over the global batch give exactly the full-batch gradient, for
every aggregation; the aggregations match their closed forms; fixed inputs are filled once."""

import math
from types import SimpleNamespace

import pytest
import torch
from test_engine_step_common import flat_grad, plain_logprobs, random_batch, rel_err, tiny_model

from expo_rl.engine.step import (
    Normalisers,
    batch_normalisers,
    build_step_terms,
    fixed_inputs,
    make_step_term,
    step_needs,
    training_step,
)

PROMPTS = [3, 5, 2, 4, 6, 3, 2, 4, 5, 3, 4]
COMPLETIONS = [4, 2, 6, 5, 3, 7, 1, 4, 6, 2, 5]


def _rows(batch, rows):
    index = torch.tensor(rows)
    return {k: v.index_select(0, index) for k, v in batch.items()}


def _exp_grpo_batch(model, reference):
    """3 GRPO groups of 3 (term 0), a DPO pair (term 1), and 0 SFT rows in some micro-batches."""
    batch = random_batch(PROMPTS, COMPLETIONS, 11)
    batch["rewards"] = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0], dtype=torch.float64)
    batch["group_index"] = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, -1, -1])
    batch["term_index"] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    batch["pair_index"] = torch.tensor([-1] * 9 + [0, 0])
    batch["pair_sign"] = torch.tensor([0] * 9 + [1, -1])
    terms = [make_step_term("grpo", beta=0.05), make_step_term("dpo", beta=0.3, weight=0.5)]
    fixed_inputs(model, batch, terms, reference_model=reference)
    # a different pi_old, so ratios are not 1 (as after an inner update)
    batch["old_logprobs"] = batch["old_logprobs"] + 0.05 * torch.randn_like(batch["old_logprobs"]) * batch["completion_mask"]
    return batch, terms


@pytest.mark.parametrize("aggregation", ["seq_mean", "token_mean", "constant"])
def test_micro_batches_sum_to_the_full_batch_gradient(aggregation):
    model, reference = tiny_model(0), tiny_model(7)
    batch, terms = _exp_grpo_batch(model, reference)
    full_norms = batch_normalisers([batch], terms, aggregation=aggregation, constant_length=8)
    full = flat_grad(model, training_step(model, batch, terms, normalisers=full_norms,
                                          aggregation=aggregation).loss)
    micro = [_rows(batch, r) for r in ([0, 1, 2, 9, 10], [3, 4, 5], [6, 7, 8])]  # whole groups and pairs
    norms = batch_normalisers(micro, terms, aggregation=aggregation, constant_length=8)
    assert norms == full_norms
    summed = sum(flat_grad(model, training_step(model, mb, terms, normalisers=norms,
                                                aggregation=aggregation).loss) for mb in micro)
    assert rel_err(summed, full) <= 1e-6  # float32 log-probs: batch shape changes rounding


def test_processes_with_unequal_shares_match_one_process():
    """DDP averages gradients over processes; with the denominators summed over processes the
    step scales the loss by the process count, so unequal row/token shares still give the
    single-process gradient."""
    model, reference = tiny_model(0), tiny_model(7)
    batch, terms = _exp_grpo_batch(model, reference)
    for aggregation in ("seq_mean", "token_mean"):
        single = batch_normalisers([batch], terms, aggregation=aggregation)
        full = flat_grad(model, training_step(model, batch, terms, normalisers=single, aggregation=aggregation).loss)
        shards = [_rows(batch, [0, 1, 2, 3, 4, 5, 9, 10]), _rows(batch, [6, 7, 8])]
        local: list[torch.Tensor] = []  # what each process hands to the all-reduce
        for shard in shards:
            batch_normalisers([shard], terms, aggregation=aggregation, num_processes=2,
                              sum_over_processes=lambda t, sent=local: sent.append(t) or t)
        global_totals = local[0] + local[1]  # what an all-reduce (sum) would return on each process
        grads = []
        for shard in shards:
            norms = batch_normalisers([shard], terms, aggregation=aggregation, num_processes=2,
                                      sum_over_processes=lambda _t, g=global_totals: g)
            assert norms.per_term == single.per_term and norms.scale == 2.0
            grads.append(flat_grad(model, training_step(model, shard, terms, normalisers=norms,
                                                        aggregation=aggregation).loss))
        assert rel_err((grads[0] + grads[1]) / 2, full) <= 1e-6


def test_aggregations_match_their_closed_forms():
    model = tiny_model(0)
    batch = random_batch(PROMPTS, COMPLETIONS, 12)
    mask = batch["completion_mask"].to(torch.float64)
    terms = [make_step_term("sft")]
    closed = {
        "seq_mean": lambda lp: -((lp.sum(-1) / mask.sum(-1)).mean()),  # mean over rows of per-row means
        "token_mean": lambda lp: -(lp.sum() / mask.sum()),             # DAPO: every token weighs the same
        "constant": lambda lp: -(lp.sum() / (len(PROMPTS) * 16)),      # Dr. GRPO: rows x a fixed budget 16
    }
    for aggregation, formula in closed.items():
        expected = formula(plain_logprobs(model, batch))
        norms = batch_normalisers([batch], terms, aggregation=aggregation, constant_length=16)
        loss = training_step(model, batch, terms, normalisers=norms, aggregation=aggregation).loss
        torch.testing.assert_close(loss.to(expected.dtype), expected, rtol=1e-6, atol=0)
        assert rel_err(flat_grad(model, loss), flat_grad(model, expected)) <= 1e-6


def test_missing_old_inputs_are_filled_by_the_first_pass():
    model = tiny_model(0)
    batch = random_batch(PROMPTS[:6], COMPLETIONS[:6], 13)
    batch["rewards"] = torch.tensor([1.0, 0, 0, 1, 0, 1], dtype=torch.float64)
    batch["group_index"] = torch.tensor([0, 0, 0, 1, 1, 1])
    terms = [make_step_term("grpo", beta=0.0)]
    out = training_step(model, batch, terms, normalisers=batch_normalisers([batch], terms), entropy=True)
    assert 0 < out.stats["grpo/entropy"].item() <= math.log(48)  # a token's entropy is at most log V
    torch.testing.assert_close(batch["old_logprobs"].to(torch.float64), plain_logprobs(model, batch).detach(),
                               rtol=1e-6, atol=1e-6)
    assert not batch["old_logprobs"].requires_grad
    assert out.stats["grpo/ratio"].item() == pytest.approx(1.0) and out.stats["grpo/clip_frac"] == 0


def test_bad_arguments_are_named():
    model = tiny_model(0)
    batch = random_batch([2, 3], [3, 2], 14)
    batch["pair_index"], batch["pair_sign"] = torch.tensor([0, 0]), torch.tensor([1, -1])
    terms = [make_step_term("dpo")]
    with pytest.raises(ValueError, match="ref_logprobs"):
        training_step(model, batch, terms, normalisers=batch_normalisers([batch], terms))
    with pytest.raises(ValueError, match="allowed values: seq_mean, token_mean, constant"):
        batch_normalisers([batch], terms, aggregation="sum")
    with pytest.raises(ValueError, match="computed for 'seq_mean'"):
        training_step(model, batch, terms, normalisers=Normalisers((1.0,)), aggregation="token_mean")
    with pytest.raises(ValueError, match="value model"):
        ppo = [make_step_term("ppo", kl_beta=0.0)]
        batch["rewards"] = torch.tensor([1.0, 0.0])
        training_step(model, batch, ppo, normalisers=batch_normalisers([batch], ppo))


def test_step_terms_from_config_objects():
    configs = [SimpleNamespace(coefficient="grpo", coefficient_args={"beta": 0.0}, weight=1.0, label="grpo"),
               SimpleNamespace(coefficient="sft", coefficient_args={}, weight=0.5, label="exp_sft")]
    terms = build_step_terms(configs)
    assert [t.name for t in terms] == ["grpo", "exp_sft"] and terms[1].weight == 0.5
    assert terms[0].hparams == {"clip_eps": 0.2, "beta": 0.0, "scale_by_std": True}
    # beta = 0: no reference model; old log-probs matter only with inner updates
    assert step_needs(terms, mu=1) == (False, False) and step_needs(terms, mu=2) == (False, True)
    assert step_needs(build_step_terms([SimpleNamespace(coefficient="dpo", label="dpo")]), mu=1) == (True, False)
