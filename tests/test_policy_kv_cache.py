"""Block and shared-prompt KV caches: same logits as DynamicCache step by step (row drops, repeats,
sliding windows), bounded buffers, and the compact decode loop drawing from the model's exact
distribution with each cache."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from transformers import DynamicCache

from expo_rl.policy import load_tiny
from expo_rl.policy.kv_cache import BlockKVCache, BlockKVLayer, block_cache_supports, cache_kwarg
from expo_rl.policy.logprobs import position_ids_from_mask
from expo_rl.policy.sampling import _decode_compact, left_pad
from expo_rl.policy.shared_prompt_cache import (
    CACHE_KWARG,
    SharedPromptKVCache,
    shared_prompt_attention_enabled,
    shared_prompt_supports,
)

EOS, PAD = 2, 0
PROMPTS = [[5, 9, 14, 3, 7, 21], [11, 4], [8, 8, 30, 6], [17, 12, 19]]  # different lengths: left padding


@torch.no_grad()
def teacher_forced_logits(model, cache, steps: int = 12) -> list[torch.Tensor]:
    """Prefill PROMPTS, expand to 2/1/3/2 rows, feed fixed tokens, drop rows at steps 3 and 7; logits per step."""
    ids, mask = left_pad(PROMPTS, PAD, "cpu")
    key = cache_kwarg(model)  # "cache" (transformers >= 5.2x) or "past_key_values"
    out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True,
                logits_to_keep=1, **{key: cache})
    index = torch.tensor([0, 0, 1, 2, 2, 2, 3, 3])
    shared = isinstance(cache, SharedPromptKVCache)
    if shared:
        cache.start_rows(index, mask)
    else:
        cache.batch_select_indices(index)
    extra = {CACHE_KWARG: cache} if shared else {}
    mask, positions = mask[index], mask.sum(-1)[index] - 1
    tokens = torch.Generator().manual_seed(0)
    feed = torch.randint(3, 40, (steps, len(index)), generator=tokens)
    logits = [out.logits[index, -1]]
    live = torch.arange(len(index))
    for step in range(steps):
        if step in (3, 7):  # rows finish: keep every other one, then all but the first
            keep = torch.arange(0, len(live), 2) if step == 3 else torch.arange(1, len(live))
            cache.batch_select_indices(keep)
            live, mask, positions = live[keep], mask[keep], positions[keep]
        mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
        positions = positions + 1
        with shared_prompt_attention_enabled(model) if shared else nullcontext():
            out = model(input_ids=feed[step, live].unsqueeze(1), attention_mask=mask,
                        position_ids=positions.unsqueeze(1), use_cache=True, **{key: cache}, **extra)
        logits.append(out.logits[:, -1])
    return logits


@pytest.mark.parametrize("arch, overrides", [
    ("qwen2", {}),
    ("llama", {}),
    ("gemma3", {"sliding_window": 4}),  # sliding layers reach their window: old tokens leave the buffer
    ("gemma3", {}),
])
def test_block_cache_gives_dynamic_cache_logits(arch, overrides):
    model, _ = load_tiny(f"tiny:{arch}", **overrides)
    assert block_cache_supports(model.config)
    width = max(len(p) for p in PROMPTS)
    block = teacher_forced_logits(model, BlockKVCache(model.config, max_length=width + 12))
    dynamic = teacher_forced_logits(model, DynamicCache(config=model.config))
    for a, b in zip(block, dynamic):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["qwen2", "llama", "gemma3"])
def test_shared_prompt_cache_gives_dynamic_cache_logits(arch):
    """Prompts stored once, each step's attention split into prompt and generated parts; prompt 0's
    rows all finish at step 7, so its prompt leaves the cache."""
    model, _ = load_tiny(f"tiny:{arch}")
    width = max(len(p) for p in PROMPTS)
    assert shared_prompt_supports(model, width + 12)
    shared = teacher_forced_logits(model, SharedPromptKVCache(model.config, max_new_tokens=12))
    dynamic = teacher_forced_logits(model, DynamicCache(config=model.config))
    for a, b in zip(shared, dynamic):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert model.config._attn_implementation == "sdpa"  # switched back after each step


def test_shared_prompt_cache_only_where_attention_sees_everything():
    gemma, _ = load_tiny("tiny:gemma3", sliding_window=16)
    assert shared_prompt_supports(gemma, 16) and not shared_prompt_supports(gemma, 17)
    eager, _ = load_tiny("tiny:qwen2")
    eager.set_attn_implementation("eager")
    assert not shared_prompt_supports(eager, 8)


def test_layer_buffers_grow_by_doubling_and_sliding_buffers_stay_bounded():
    full, sliding = BlockKVLayer(max_length=100), BlockKVLayer(max_length=100, sliding_window=8)
    for layer in (full, sliding):
        layer.update(torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4))  # prefill of 5 tokens
    assert full._keys.shape[2] == 10  # twice what is needed
    capacities = set()
    for _ in range(90):
        k = torch.randn(3, 2, 1, 4)
        keys, _ = full.update(k, k)
        assert keys.shape[2] == full.seen and torch.equal(keys[:, :, -1:], k)
        keys, _ = sliding.update(k, k)
        assert keys.shape[2] == min(sliding.seen, 8)  # at most window - 1 cached tokens + the new one
        assert torch.equal(keys[:, :, -1:], k)
        capacities.add(full._keys.shape[2])
    # full at 10, 22, 46, 94 tokens: twice the tokens then needed (11, 23, 47), capped at max_length
    assert capacities == {10, 22, 46, 94, 100}
    assert sliding._keys.shape[2] <= 16 and sliding.get_mask_sizes(1) == (8, 95 - 8 + 1)


def test_row_selection_compacts_in_place_and_repeats_rows():
    layer = BlockKVLayer(max_length=20)
    keys = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 4, 2).clone()
    layer.update(keys, keys)
    layer.batch_select_indices(torch.tensor([0, 0, 2, 2, 2]))  # more rows: a new buffer
    assert layer.keys[:, 0, 0, 0].tolist() == [0, 0, 2, 2, 2]
    buffer = layer._keys
    layer.batch_select_indices(torch.tensor([1, 4]))  # fewer rows: the same buffer
    assert layer._keys is buffer and layer.keys[:, 0, 0, 0].tolist() == [0, 2]
    keys, _ = layer.update(torch.full((2, 1, 1, 2), 7.0), torch.full((2, 1, 1, 2), 7.0))
    assert keys.shape == (2, 1, 5, 2) and keys[:, 0, :, 0].tolist() == [[0, 0, 0, 0, 7], [2, 2, 2, 2, 7]]


@torch.no_grad()
def exact_completion_probs(model, prompt: list[int], vocab: int) -> dict[tuple[int, ...], float]:
    """P(completion) of every completion of at most 2 tokens (EOS ends one early), from uncached forwards."""
    def next_probs(ids: list[int]) -> torch.Tensor:
        return torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)

    first = next_probs(prompt)
    probs = {(EOS,): first[EOS].item()}
    for t1 in range(vocab):
        if t1 != EOS:
            second = next_probs(prompt + [t1])
            probs.update({(t1, t2): (first[t1] * second[t2]).item() for t2 in range(vocab)})
    return probs


@pytest.mark.parametrize("kv_cache", ["shared", "block", "dynamic"])
def test_compact_decode_draws_the_models_distribution(kv_cache):
    """10,000 completions per prompt (rows finishing at EOS are dropped): each of the 57 possible
    completions' frequency is within 4.5 standard errors of its exact probability."""
    vocab = 8
    model, _ = load_tiny("tiny:llama", vocab_size=vocab)
    with torch.no_grad():  # sharper conditionals; EOS gets the logit of token 3, the most likely one (~0.2-0.3)
        model.lm_head.weight.mul_(5)
        model.lm_head.weight[EOS] = model.lm_head.weight[3]
    prompts, draws = [[5, 3, 6, 1, 7], [4, 6]], 10_000
    torch.manual_seed(0)
    completions = _decode_compact(model, prompts, [draws, draws], temperature=1.0, top_p=1.0, max_new_tokens=2,
                                  eos_ids=[EOS], pad_id=PAD, kv_cache=kv_cache)
    for i, prompt in enumerate(prompts):
        exact = exact_completion_probs(model, prompt, vocab)
        assert abs(sum(exact.values()) - 1) < 1e-9
        counts = dict.fromkeys(exact, 0)
        for completion in completions[i * draws:(i + 1) * draws]:
            counts[tuple(completion)] += 1  # a KeyError would be an impossible completion
        assert 0.05 < exact[(EOS,)] < 0.95  # both stopping and continuing rows exercised
        for outcome, p in exact.items():
            assert abs(counts[outcome] / draws - p) <= 4.5 * (p * (1 - p) / draws) ** 0.5 + 1e-12, outcome


def test_shared_prompt_cache_under_bf16_autocast():
    """``train.mixed_precision: bf16`` samples under CPU autocast, where RoPE leaves q and k in float32
    and v in bf16: the cache runs attention in bf16 as sdpa does, within bf16 rounding of it."""
    model, _ = load_tiny("tiny:qwen2")
    width = max(len(p) for p in PROMPTS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        shared = teacher_forced_logits(model, SharedPromptKVCache(model.config, max_new_tokens=12))
        dynamic = teacher_forced_logits(model, DynamicCache(config=model.config))
    assert shared_prompt_supports(model, width + 12)
    for a, b in zip(shared, dynamic):
        torch.testing.assert_close(a.float(), b.float(), atol=0.05, rtol=0)
