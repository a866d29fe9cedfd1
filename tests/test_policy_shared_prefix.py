"""Shared prompts run once (issue 15): the same scored hidden states and gradients as the plain
forward, in float64, for GRPO groups and DPO pairs, through ``completion_logprobs`` and the step.

transformers' RMSNorms compute in float32 even in a float64 model. Forward values are still
bitwise the same (every token goes through the same ops), but in backward the shared path sums
a prompt's upstream gradients from its G rows *before* the norm, the plain path after it, so
the two differ at float32 rounding (~1e-8 relative). The ``float64_norms`` fixture makes the
norms compute in the model's dtype; then the paths agree to float64 rounding (<= 1e-12). One
test keeps the stock norms and holds the shared path to the method tests' 1e-6."""

from __future__ import annotations

import functools

import pytest
import torch
from test_engine_step_common import VOCAB, flat_grad, rel_err, tiny_model
from transformers.models.gemma3 import modeling_gemma3
from transformers.models.llama import modeling_llama
from transformers.models.qwen2 import modeling_qwen2

import expo_rl.policy.logprobs as logprobs_module
from expo_rl.engine.step import batch_normalisers, fixed_inputs, make_step_term, training_step
from expo_rl.policy import load_tiny
from expo_rl.policy.logprobs import _scored_context, completion_logprobs, pack_sequences
from expo_rl.policy.shared_prefix import shared_prefix_context, suffix_pieces

PROMPT_OF_ROW = [0, 0, 0, 1, 1, 2]  # a group of 3, a pair, a single row
PROMPT_LENS = [5, 3, 4]
COMPLETION_LENS = [4, 2, 6, 5, 3, 7]


def shared_batch(seed: int, vocab: int = VOCAB) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in PROMPT_LENS]
    completions = [torch.randint(3, vocab, (n,), generator=gen).tolist() for n in COMPLETION_LENS]
    ids, attention, completion = pack_sequences([prompts[p] for p in PROMPT_OF_ROW], completions, pad_id=0)
    return {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}


@pytest.fixture
def float64_norms(monkeypatch):
    def plain(self, x):  # Qwen2 / Llama: w * x / rms(x), in x's dtype
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))

    def gemma(self, x):  # Gemma 3: (1 + w) * x / rms(x)
        return (1.0 + self.weight) * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    monkeypatch.setattr(modeling_qwen2.Qwen2RMSNorm, "forward", plain)
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", plain)
    monkeypatch.setattr(modeling_gemma3.Gemma3RMSNorm, "forward", gemma)


def context_and_grad(fn, model, batch):
    """Scored (rows, cols, states) in row-major order, and the gradient of a fixed weighting of the states."""
    rows, cols, context = fn(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    order = torch.argsort(rows * batch["input_ids"].shape[1] + cols)  # the shared path returns them per run
    rows, cols, context = rows[order], cols[order], context[order]
    weights = torch.randn(context.shape, generator=torch.Generator().manual_seed(1), dtype=context.dtype)
    return rows, cols, context.detach(), flat_grad(model, (context * weights).sum())


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
@pytest.mark.parametrize("call_tokens", [0, 10_000])  # suffixes in 6 runs of their own length / in one run
def test_scored_states_and_gradients_match_the_plain_forward(arch, call_tokens, float64_norms):
    model, _ = load_tiny(f"tiny:{arch}", dtype=torch.float64)
    model.train()
    batch = shared_batch(0, vocab=model.config.vocab_size)
    rows, cols, plain, plain_grad = context_and_grad(_scored_context, model, batch)
    shared_fn = functools.partial(shared_prefix_context, call_tokens=call_tokens)
    s_rows, s_cols, shared, shared_grad = context_and_grad(shared_fn, model, batch)
    assert torch.equal(rows, s_rows) and torch.equal(cols, s_cols)
    torch.testing.assert_close(shared, plain, rtol=1e-12, atol=1e-12)
    assert rel_err(shared_grad, plain_grad) <= 1e-12


def test_not_applicable_returns_none():
    model, _ = load_tiny("tiny:gemma3", dtype=torch.float64, sliding_window=8)
    batch = shared_batch(0, vocab=model.config.vocab_size)
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    assert shared_prefix_context(model, *args) is None  # window 8 < padded prompt + longest suffix
    model, _ = load_tiny("tiny:qwen2", dtype=torch.float64)
    distinct = dict(batch, input_ids=batch["input_ids"].clone())
    distinct["input_ids"][:, 0] = torch.arange(3, 9)  # every row its own prompt: nothing to share
    assert shared_prefix_context(model, distinct["input_ids"], *args[1:]) is None
    assert shared_prefix_context(model, *args, max_tokens=1000) is not None
    # 3 prompts x 5 (left-padded) + suffixes of 2..7 tokens, each in its own run when a call is free:
    # 15 + 27 = 42 tokens, not fewer than a 42-token alternative
    assert shared_prefix_context(model, *args, max_tokens=42) is None
    assert shared_prefix_context(model, *args, max_tokens=43) is not None
    # a suffix run costs 100 tokens more: one run of 6 x 7, so 15 + 42 + 100 = 157
    assert shared_prefix_context(model, *args, max_tokens=157, call_tokens=100) is None
    assert shared_prefix_context(model, *args, max_tokens=158, call_tokens=100) is not None


def test_suffix_pieces_minimise_padding_plus_calls():
    assert [(i.tolist(), w) for i, w in suffix_pieces([5, 2, 9], 0)] == [([1], 2), ([0], 5), ([2], 9)]
    assert [(i.tolist(), w) for i, w in suffix_pieces([5, 2, 9], 100)] == [([1, 0, 2], 9)]
    # 4 short rows and 2 long ones: two runs (4 x 3 + 2 x 50 + 2 x 10) beat one (6 x 50 + 10)
    assert [(i.tolist(), w) for i, w in suffix_pieces([3, 50, 2, 3, 48, 1], 10)] == [([5, 2, 0, 3], 3), ([4, 1], 50)]


def step_gradient(model, reference, batch, terms, shared: bool, monkeypatch):
    """Gradient of the shared step; ``shared=False`` runs every row's prompt (today's forward)."""
    with monkeypatch.context() as patch:
        if not shared:
            patch.setattr(logprobs_module, "shared_prefix_context", lambda *args, **kw: None)
        batch = dict(batch)
        fixed_inputs(model, batch, terms, reference_model=reference)
        norms = batch_normalisers([batch], terms)
        out = training_step(model, batch, terms, normalisers=norms)
        return flat_grad(model, out.loss), out


def dpo_and_grpo_cases():
    dpo = dict(pair_index=torch.tensor([-1, -1, -1, 0, 0, -1]), pair_sign=torch.tensor([0, 0, 0, 1, -1, 0]),
               term_index=torch.tensor([1, 1, 1, 0, 0, 1]))
    grpo = dict(rewards=torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64),
                group_index=torch.tensor([0, 0, 0, -1, -1, -1]))
    # DPO on the pair next to an SFT term on the other rows; GRPO on the group of 3 next to SFT
    return [
        ("dpo", dpo, [make_step_term("dpo", beta=0.5), make_step_term("sft")]),
        ("grpo", {**grpo, "term_index": torch.tensor([0, 0, 0, 1, 1, 1])},
         [make_step_term("grpo", clip_eps=0.05, beta=0.1), make_step_term("sft")]),
    ]


@pytest.mark.parametrize("name, keys, terms", dpo_and_grpo_cases(), ids=["dpo", "grpo"])
def test_step_gradients_match_with_shared_prompts(name, keys, terms, float64_norms, monkeypatch):
    model, reference = tiny_model(0), tiny_model(7)
    batch = {**shared_batch(3), **keys}
    if name == "grpo":  # pi_old away from pi_theta (as after an inner update): ratios != 1, some clipped
        sign = torch.randint(0, 2, batch["input_ids"].shape, generator=torch.Generator().manual_seed(5)) * 2 - 1
        current = completion_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
        batch["old_logprobs"] = (current.detach().double() + 0.1 * sign) * batch["completion_mask"]
    # forward calls free: this 6-row batch then takes the shared path (a 256-token call cost favours one piece)
    monkeypatch.setattr(logprobs_module, "BUCKET_CALL_TOKENS", 0)
    shared_used = []
    real = logprobs_module.shared_prefix_context
    monkeypatch.setattr(logprobs_module, "shared_prefix_context",
                        lambda *args, **kw: shared_used.append(real(*args, **kw)) or shared_used[-1])
    shared, out = step_gradient(model, reference, batch, terms, True, monkeypatch)
    assert len(shared_used) == 2 and all(r is not None for r in shared_used)  # pi_ref and the step: shared
    plain, plain_out = step_gradient(model, reference, batch, terms, False, monkeypatch)
    assert rel_err(shared, plain) <= 1e-12
    assert torch.allclose(out.loss, plain_out.loss, rtol=1e-12, atol=0)
    if name == "grpo":
        assert 0.0 < out.stats["grpo/clip_frac"].item() < 1.0


def test_stock_norms_within_the_method_tests_tolerance(monkeypatch):
    model, reference = tiny_model(0), tiny_model(7)
    name, keys, terms = dpo_and_grpo_cases()[0]
    batch = {**shared_batch(3), **keys}
    monkeypatch.setattr(logprobs_module, "BUCKET_CALL_TOKENS", 0)  # the shared path for this small batch
    shared, _ = step_gradient(model, reference, batch, terms, True, monkeypatch)
    plain, _ = step_gradient(model, reference, batch, terms, False, monkeypatch)
    assert 0 < rel_err(shared, plain) <= 1e-6  # float32 norms: not bitwise, well within 1e-6
