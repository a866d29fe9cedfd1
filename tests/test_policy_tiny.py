"""Tiny random models: spec parsing, sizes, determinism, eos/pad ids."""

from __future__ import annotations

import pytest
import torch

from expo_rl.policy.tiny import load_tiny, parse_tiny_spec, tiny_model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
def test_tiny_default_size_and_ids(arch):
    model, tok = load_tiny(f"tiny:{arch}")
    assert 0.5e6 <= n_params(model) <= 1.5e6
    assert model.config.vocab_size == len(tok) == 2048
    assert model.generation_config.eos_token_id == tok.eos_token_id == 2
    assert model.generation_config.pad_token_id == tok.pad_token_id == 0
    assert not model.training


def test_tiny_size_suffix():
    assert 15e6 <= n_params(tiny_model("qwen2", parse_tiny_spec("tiny:qwen2:20m").n_params)) <= 25e6


def test_tiny_tied_and_untied():
    qwen = tiny_model("qwen2")
    assert qwen.lm_head.weight.data_ptr() == qwen.model.embed_tokens.weight.data_ptr()
    llama = tiny_model("llama")
    assert llama.lm_head.weight.data_ptr() != llama.model.embed_tokens.weight.data_ptr()


def test_tiny_deterministic_and_rng_neutral():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, _ = load_tiny("tiny:llama")
    after = torch.rand(1)
    b, _ = load_tiny("tiny:llama")
    c, _ = load_tiny("tiny:llama:seed=1")
    assert torch.equal(before, after)  # building a tiny model does not consume the caller's RNG
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


@pytest.mark.parametrize("spec, message", [
    ("tiny:gpt9", "unknown tiny architecture 'gpt9'.*qwen2, llama, gemma3"),
    ("tiny:qwen2:big", "bad tiny model size 'big'"),
    ("tiny:qwen2:seed=x", "bad seed"),
    ("tiny", "not a tiny spec"),
])
def test_tiny_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_tiny_spec(spec)
