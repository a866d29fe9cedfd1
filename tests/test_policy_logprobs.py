"""Chunked completion log-probs vs the naive full-softmax computation, padding, gradients."""

from __future__ import annotations

import pytest
import torch

from expo_rl.policy import completion_logprobs, pack_sequences, reference_completion_logprobs
from expo_rl.policy.logprobs import auto_chunk_size, sequence_logprob_sums
from expo_rl.policy.tiny import tiny_model

PROMPTS = [[5, 6, 7], [8, 9], [10, 11, 12, 13, 14], [30]]
COMPLETIONS = [[20, 21, 2], [22], [], [40, 41, 42, 43, 44, 45, 2]]

MODELS = {
    "qwen2-tied": dict(arch="qwen2"),
    "llama-untied": dict(arch="llama"),
    "gemma3-softcap": dict(arch="gemma3", final_logit_softcapping=3.0),  # small cap: tanh really bends
}


@pytest.fixture(scope="module", params=list(MODELS))
def model(request):
    kw = dict(MODELS[request.param])
    return tiny_model(kw.pop("arch"), 200_000, seed=1, **kw)


def left_pad(prompts, completions, pad_id=0):
    """Left-padded packing: [pad ... prompt completion]."""
    rows = [p + c for p, c in zip(prompts, completions)]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id)
    attn = torch.zeros_like(ids)
    comp = torch.zeros_like(ids)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        start = width - len(p) - len(c)
        ids[i, start:] = torch.tensor(p + c)
        attn[i, start:] = 1
        comp[i, start + len(p):] = 1
    return ids, attn, comp


def test_pack_sequences_layout():
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    assert ids.shape == (4, 8)
    assert ids[0].tolist() == [5, 6, 7, 20, 21, 2, 0, 0]
    assert attn[0].tolist() == [1, 1, 1, 1, 1, 1, 0, 0]
    assert comp[0].tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert comp[2].sum() == 0 and attn[2].sum() == 5
    assert comp.sum(-1).tolist() == [len(c) for c in COMPLETIONS]


def test_pack_sequences_errors():
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        pack_sequences([[1], [2]], [[3]], 0)
    with pytest.raises(ValueError, match="row 1 has an empty prompt"):
        pack_sequences([[1], []], [[3], [4]], 0)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000, None])
def test_chunked_equals_naive_right_padding(model, chunk_size):
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        chunked = completion_logprobs(model, ids, attn, comp, chunk_size=chunk_size)
        naive = reference_completion_logprobs(model, ids, attn, comp)
    assert chunked.shape == ids.shape and chunked.dtype == torch.float32
    assert (chunked[comp == 0] == 0).all()
    assert (chunked[comp == 1] < 0).all()
    assert (chunked - naive).abs().max().item() <= 1e-5


@pytest.mark.parametrize("chunk_size", [2, 5])
def test_left_right_and_unpadded_agree(model, chunk_size):
    right = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    left = left_pad(PROMPTS, COMPLETIONS)
    with torch.no_grad():
        lp_right = completion_logprobs(model, *right, chunk_size=chunk_size)
        lp_left = completion_logprobs(model, *left, chunk_size=chunk_size)
        naive_left = reference_completion_logprobs(model, *left)
    assert (lp_left - naive_left).abs().max().item() <= 1e-5
    # the same tokens get the same log-probs whatever the padding side, and as a batch of one
    for i, completion in enumerate(COMPLETIONS):
        n = len(completion)
        if n == 0:
            continue
        single = pack_sequences([PROMPTS[i]], [completion], pad_id=0)
        with torch.no_grad():
            lp_single = completion_logprobs(model, *single, chunk_size=chunk_size)[0, -n:]
        r = lp_right[i][right[2][i] == 1]
        le = lp_left[i][left[2][i] == 1]
        assert torch.allclose(r, lp_single, atol=1e-5)
        assert torch.allclose(le, lp_single, atol=1e-5)


def test_gradient_matches_naive(model):
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    weights = torch.linspace(-1.0, 2.0, ids.numel()).reshape(ids.shape)  # a non-trivial loss

    def grads(fn):
        model.zero_grad(set_to_none=True)
        (fn(model, ids, attn, comp) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    chunked = grads(lambda *a: completion_logprobs(*a, chunk_size=3))
    naive = grads(reference_completion_logprobs)
    model.zero_grad(set_to_none=True)
    assert chunked.keys() == naive.keys() and len(chunked) > 0
    for name in naive:
        scale = naive[name].abs().max().item() + 1e-6
        assert (chunked[name] - naive[name]).abs().max().item() <= 1e-4 * scale, name


def test_entropy_and_sums(model):
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        lp, ent = completion_logprobs(model, ids, attn, comp, chunk_size=4, return_entropy=True)
        logits = model(input_ids=ids, attention_mask=attn).logits.float()
    logp = torch.log_softmax(logits[:, :-1], -1)
    naive_ent = -(logp.exp() * logp).sum(-1)
    mask = comp[:, 1:].bool()
    assert torch.allclose(ent[:, 1:][mask], naive_ent[mask], atol=1e-4)
    assert (ent[comp == 0] == 0).all()
    vocab = model.config.vocab_size
    assert (ent[comp == 1] <= torch.log(torch.tensor(float(vocab))) + 1e-4).all()
    assert torch.allclose(sequence_logprob_sums(lp, comp), lp.sum(-1))


def test_shape_mismatch_and_bad_chunk(model):
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with pytest.raises(ValueError, match="same \\[B,T\\] shape"):
        completion_logprobs(model, ids, attn[:, :-1], comp)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        completion_logprobs(model, ids, attn, comp, chunk_size=0)


def test_auto_chunk_size():
    assert auto_chunk_size(262_144) == 256  # 256 rows x 262k x 4 B = 256 MiB
    assert auto_chunk_size(2048) == 32_768


class _Wrapper(torch.nn.Module):
    """DDP-style wrapper: the real model under ``.module``, forward delegated."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def test_wrapped_model_goes_through_wrapper_forward(model):
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        wrapped = completion_logprobs(_Wrapper(model), ids, attn, comp, chunk_size=3)
        naive = reference_completion_logprobs(model, ids, attn, comp)
    assert (wrapped - naive).abs().max().item() <= 1e-5


def test_peft_lora_including_the_head():
    from peft import LoraConfig, get_peft_model

    base = tiny_model("llama", 200_000, seed=2)
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "lm_head"],
                                           init_lora_weights=False))  # non-zero B: adapters matter
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        chunked = completion_logprobs(lora, ids, attn, comp, chunk_size=4)
        naive = reference_completion_logprobs(lora, ids, attn, comp)
        with lora.disable_adapter():
            plain = completion_logprobs(lora, ids, attn, comp, chunk_size=4)
    assert (chunked - naive).abs().max().item() <= 1e-5
    assert (chunked - plain).abs().max().item() > 1e-3  # the head's adapter is really applied
    completion_logprobs(lora, ids, attn, comp, chunk_size=4).sum().backward()
    grads = {n for n, p in lora.named_parameters() if p.grad is not None}
    assert any("lm_head" in n and "lora_A" in n for n in grads)
    assert all("lora_" in n for n in grads)  # base weights stay frozen


@pytest.mark.parametrize("temperature", [0.7, 1.6])
def test_temperature_scores_the_tempered_distribution(model, temperature):
    """``temperature=T``: log_softmax(logits / T) gathered (the sampler's distribution at T,
    after Gemma's softcap), entropy of the same distribution; T = 1 is the plain call."""
    ids, attn, comp = pack_sequences(PROMPTS, COMPLETIONS, pad_id=0)
    with torch.no_grad():
        lp, ent = completion_logprobs(model, ids, attn, comp, chunk_size=3, return_entropy=True,
                                      temperature=temperature)
        logits = model(input_ids=ids, attention_mask=attn).logits.float()[:, :-1] / temperature
        plain = completion_logprobs(model, ids, attn, comp, chunk_size=3)
    logp = torch.log_softmax(logits, -1)
    expected = logp.gather(-1, ids[:, 1:, None]).squeeze(-1) * comp[:, 1:]
    assert (lp[:, 1:] - expected).abs().max().item() <= 1e-5 and (lp[:, 0] == 0).all()
    mask = comp[:, 1:].bool()
    assert torch.allclose(ent[:, 1:][mask], -(logp.exp() * logp).sum(-1)[mask], atol=1e-4)
    assert (lp - plain).abs().max().item() > 1e-3  # really a different distribution
    with pytest.raises(ValueError, match="temperature must be > 0"):
        completion_logprobs(model, ids, attn, comp, temperature=0.0)
