"""Shared pieces of the step tests (no tests here): a tiny float64 transformers model, random
batches, and an independent (plain, unchunked) log-prob computation for closed-form objectives."""

from __future__ import annotations

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

VOCAB = 48


def tiny_model(seed: int, dtype=torch.float64, hidden: int = 16, layers: int = 2) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=64, tie_word_embeddings=False, pad_token_id=0,
                         bos_token_id=1, eos_token_id=2)
    model = Qwen2ForCausalLM(config).to(dtype)
    model.train()  # the tiny config has no dropout; train mode exercises what training uses
    return model


def random_batch(prompt_lens: list[int], completion_lens: list[int], seed: int) -> dict[str, torch.Tensor]:
    """Right-padded rows: [prompt][completion][pad]; token ids avoid the pad id 0."""
    gen = torch.Generator().manual_seed(seed)
    width = max(p + c for p, c in zip(prompt_lens, completion_lens)) + 1
    rows = len(prompt_lens)
    input_ids = torch.zeros(rows, width, dtype=torch.long)
    attention = torch.zeros(rows, width, dtype=torch.long)
    completion = torch.zeros(rows, width, dtype=torch.long)
    for i, (p, c) in enumerate(zip(prompt_lens, completion_lens)):
        input_ids[i, :p + c] = torch.randint(3, VOCAB, (p + c,), generator=gen)
        attention[i, :p + c] = 1
        completion[i, p:p + c] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "completion_mask": completion}


def plain_logprobs(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log pi(token_t | <t) at completion positions, 0 elsewhere: full logits, no chunking."""
    ids = batch["input_ids"]
    logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    picked = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return torch.cat([torch.zeros_like(picked[:, :1]), picked], 1) * batch["completion_mask"]


def seq_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum(-1) / mask.sum(-1)


def flat_grad(model: torch.nn.Module, loss: torch.Tensor, params=None) -> torch.Tensor:
    params = [p for p in (params or model.parameters()) if p.requires_grad]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())
