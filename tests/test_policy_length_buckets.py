"""Length sub-batches in ``completion_logprobs``: same log-probs and gradients as one padded batch,
for right and left padding, and the cut search really splits varied lengths (and only those)."""

from __future__ import annotations

import random

import pytest
import torch

from expo_rl.policy import completion_logprobs, pack_sequences
from expo_rl.policy.logprobs import length_sub_batches
from expo_rl.policy.tiny import tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2", 200_000, seed=3).double()


def varied_rows(seed: int = 0, count: int = 12):
    """Prompts of 2-9 tokens and completions of 1-120 tokens: very unequal widths."""
    rng = random.Random(seed)
    prompts = [[rng.randrange(3, 200) for _ in range(rng.randint(2, 9))] for _ in range(count)]
    lengths = [rng.choice([1, 4, 30, 60, 120]) for _ in range(count)]
    completions = [[rng.randrange(3, 200) for _ in range(n)] for n in lengths]
    return prompts, completions


def left_padded(prompts, completions):
    ids, attn, comp = pack_sequences(prompts, completions, pad_id=0)
    for i in range(ids.shape[0]):  # roll each row's tokens to the right end
        shift = int(ids.shape[1] - attn[i].sum())
        ids[i], attn[i], comp[i] = (t[i].roll(shift) for t in (ids, attn, comp))
    return ids, attn, comp


@pytest.mark.parametrize("padding", ["right", "left"])
def test_sub_batches_equal_one_batch_values_and_gradients(model, padding):
    prompts, completions = varied_rows()
    ids, attn, comp = (pack_sequences(prompts, completions, pad_id=0) if padding == "right"
                       else left_padded(prompts, completions))
    pieces = length_sub_batches(attn)
    assert pieces is not None and len(pieces) >= 2  # the varied batch is really cut
    covered = sorted(i for index, _, _ in pieces for i in index.tolist())
    assert covered == list(range(ids.shape[0]))
    weights = torch.linspace(-1.0, 2.0, ids.numel(), dtype=torch.float64).reshape(ids.shape)

    def run(buckets: bool):
        model.zero_grad(set_to_none=True)
        logp = completion_logprobs(model, ids, attn, comp, chunk_size=17, length_buckets=buckets)
        (logp.double() * weights).sum().backward()
        return logp.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    one_logp, one_grads = run(False)
    cut_logp, cut_grads = run(True)
    assert torch.count_nonzero(one_logp) == torch.count_nonzero(cut_logp) > 0
    assert torch.allclose(one_logp, cut_logp, atol=1e-5, rtol=0)  # float32 head output
    assert one_grads.keys() == cut_grads.keys() and one_grads
    for name, grad in one_grads.items():
        scale = grad.abs().max().item() + 1e-12
        assert (cut_grads[name] - grad).abs().max().item() <= 1e-5 * scale, name


def test_equal_lengths_and_tiny_batches_stay_whole():
    equal = torch.ones(8, 50, dtype=torch.long)
    assert length_sub_batches(equal) is None
    one_row = torch.ones(1, 50, dtype=torch.long)
    assert length_sub_batches(one_row) is None
    # two short rows next to one long one: cutting saves more than a forward call costs
    mask = torch.zeros(3, 600, dtype=torch.long)
    mask[0, :600] = 1
    mask[1, :20] = 1
    mask[2, :30] = 1
    pieces = length_sub_batches(mask, call_tokens=256)
    assert pieces is not None
    assert sorted((index.tolist(), start, end) for index, start, end in pieces) == [([0], 0, 600),
                                                                                  ([1, 2], 0, 30)]
