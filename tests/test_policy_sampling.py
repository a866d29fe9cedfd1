"""Sampling: order, EOS/finished semantics, engines agree, determinism, top-p, bad arguments."""

from __future__ import annotations

import pytest
import torch

from expo_rl.policy import build_prompt, encode_prompt, load_tiny, sample
from expo_rl.policy.sampling import draw_inverse_cdf, next_tokens, trim_completion

EOS, PAD = 2, 0


@pytest.fixture(scope="module")
def stopping():
    """A tiny Llama whose EOS logit is scaled up, so samples stop at many different lengths."""
    model, tok = load_tiny("tiny:llama")
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 60
    return model, tok


@pytest.fixture(scope="module")
def prompts(stopping):
    _, tok = stopping
    return [build_prompt(tok, f"Question number {i}: what is {i}*{i+3}?" + " Think." * (i % 3)) for i in range(6)]


def check_semantics(batch, tok, max_new_tokens):
    for ids, text, finished in zip(batch.completion_ids, batch.texts, batch.finished):
        assert 1 <= len(ids) <= max_new_tokens
        assert finished == (ids[-1] == EOS)  # EOS kept when finished: training must learn to stop
        assert EOS not in ids[:-1]  # nothing after the first EOS
        if not finished:
            assert len(ids) == max_new_tokens  # truncated samples used the whole budget
        assert text == tok.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("engine", ["compact", "generate"])
def test_order_and_eos_semantics(stopping, prompts, engine):
    model, tok = stopping
    batch = sample(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=32, seed=0, engine=engine,
                   batch_size=5)
    assert len(batch) == 18
    assert batch.prompt_index == [i for i in range(6) for _ in range(3)]
    for i, ids in zip(batch.prompt_index, batch.prompt_ids):
        assert ids == encode_prompt(tok, prompts[i])
        assert tok.decode(ids) == prompts[i]
    check_semantics(batch, tok, 32)
    assert 0 < sum(batch.finished) < len(batch)  # both cases exercised


@pytest.mark.parametrize("batch_size", [None, 3])
def test_engines_agree_greedy(stopping, prompts, batch_size):
    """Greedy is deterministic, so dropping finished rows and the shared prefill must change nothing."""
    model, tok = stopping
    kw = dict(n=2, temperature=0.0, max_new_tokens=20, batch_size=batch_size)
    compact = sample(model, tok, prompts, engine="compact", **kw)
    generate = sample(model, tok, prompts, engine="generate", **kw)
    assert compact.completion_ids == generate.completion_ids
    assert compact.finished == generate.finished
    lengths = {len(c) for c in compact.completion_ids}
    assert len(lengths) >= 3  # rows really finished at different steps


def test_engines_same_stopping_distribution(stopping, prompts):
    """Sampling: fraction finished and mean length agree within sampling error (fixed seeds)."""
    model, tok = stopping
    stats = {}
    for engine in ("compact", "generate"):
        b = sample(model, tok, prompts[:4], n=12, temperature=1.0, max_new_tokens=24, seed=7, engine=engine)
        lengths = torch.tensor([len(c) for c in b.completion_ids], dtype=torch.float64)
        stats[engine] = (lengths.mean().item(), lengths.std().item() / len(lengths) ** 0.5,
                         sum(b.finished) / len(b))
    (m1, se1, f1), (m2, se2, f2) = stats["compact"], stats["generate"]
    assert abs(m1 - m2) <= 4 * (se1**2 + se2**2) ** 0.5 + 1e-9
    assert abs(f1 - f2) <= 0.15


def test_seed_determinism_and_rng_isolation(stopping, prompts):
    model, tok = stopping
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    a = sample(model, tok, prompts[:2], n=4, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=3)
    after = torch.rand(3)
    b = sample(model, tok, prompts[:2], n=4, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=3)
    c = sample(model, tok, prompts[:2], n=4, temperature=1.0, top_p=0.9, max_new_tokens=12, seed=4)
    assert a.completion_ids == b.completion_ids
    assert a.completion_ids != c.completion_ids
    assert torch.equal(expected_next, after)  # the caller's RNG stream is untouched
    assert len({tuple(x) for x in a.completion_ids[:4]}) > 1  # n samples of one prompt differ


def test_model_generation_defaults_do_not_leak(prompts):
    """A model shipping top_k=1 (like Gemma's top_k=64) must not narrow our sampling distribution."""
    model, tok = load_tiny("tiny:qwen2:500k")
    model.generation_config.top_k = 1
    model.generation_config.do_sample = True
    batch = sample(model, tok, prompts[:1], n=6, temperature=1.0, max_new_tokens=6, seed=0, engine="generate")
    assert len({tuple(x) for x in batch.completion_ids}) > 1


def test_next_tokens_top_p_and_greedy():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert next_tokens(logits, 0.0, 1.0).tolist() == [0]
    draws = torch.stack([next_tokens(logits, 1.0, 0.7) for _ in range(4000)]).flatten()
    # nucleus of mass 0.7 = {0, 1} (0.5 + 0.3 >= 0.7); renormalised 0.625 / 0.375
    assert set(draws.tolist()) == {0, 1}
    assert abs((draws == 0).double().mean().item() - 0.625) < 0.03
    full = torch.stack([next_tokens(logits, 1.0, 1.0) for _ in range(4000)]).flatten()
    freq = torch.bincount(full, minlength=4).double() / 4000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64), atol=0.03)


@pytest.mark.parametrize("top_p, expected", [
    (1.0, [0.5, 0.3, 0.15, 0.05]),
    (0.7, [0.625, 0.375, 0.0, 0.0]),  # the nucleus {0, 1}, renormalised
])
def test_inverse_cdf_draw_has_the_softmax_distribution(top_p, expected):
    """20,000 draws: every frequency within 4.5 standard errors; zero-mass tokens never drawn."""
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(20_000, 4)
    draws = next_tokens(logits, 1.0, top_p, draw="inverse_cdf")
    freq = torch.bincount(draws, minlength=4).double() / len(draws)
    for f, p in zip(freq.tolist(), expected):
        if p == 0:
            assert f == 0
        else:
            assert abs(f - p) <= 4.5 * (p * (1 - p) / len(draws)) ** 0.5


def test_inverse_cdf_draw_rounding_at_the_top_returns_the_last_token_with_mass(monkeypatch):
    probs = torch.tensor([[0.2, 0.8, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: torch.ones(shape, dtype=kw.get("dtype")))  # u = 1
    assert draw_inverse_cdf(probs).tolist() == [1, 3]


def test_inverse_cdf_sampling_matches_multinomial_in_distribution(stopping, prompts):
    """Whole completions: stopping fraction and mean length agree within sampling error."""
    model, tok = stopping
    stats = {}
    for draw in ("multinomial", "inverse_cdf"):
        b = sample(model, tok, prompts[:4], n=12, temperature=1.0, max_new_tokens=24, seed=7, draw=draw)
        check_semantics(b, tok, 24)
        lengths = torch.tensor([len(c) for c in b.completion_ids], dtype=torch.float64)
        stats[draw] = (lengths.mean().item(), lengths.std().item() / len(lengths) ** 0.5, sum(b.finished) / len(b))
    (m1, se1, f1), (m2, se2, f2) = stats["multinomial"], stats["inverse_cdf"]
    assert abs(m1 - m2) <= 4 * (se1**2 + se2**2) ** 0.5 + 1e-9
    assert abs(f1 - f2) <= 0.15
    again = sample(model, tok, prompts[:4], n=12, temperature=1.0, max_new_tokens=24, seed=7, draw="inverse_cdf")
    assert again.completion_ids == b.completion_ids  # seeded: reproducible


def test_trim_completion():
    assert trim_completion([5, 6, 2, 0, 0], [2]) == ([5, 6, 2], True)
    assert trim_completion([5, 6, 7], [2]) == ([5, 6, 7], False)
    assert trim_completion([106, 1], [1, 106]) == ([106], True)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0), "n must be >= 1"),
    (dict(temperature=-1.0), "temperature must be >= 0"),
    (dict(top_p=0.0), "top_p must be in"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(engine="vllm"), "unknown engine 'vllm'"),
    (dict(draw="gumbel"), "draw must be one of"),
    (dict(draw="inverse_cdf", engine="generate"), "needs engine='compact'"),
])
def test_bad_arguments(stopping, kwargs, message):
    model, tok = stopping
    with pytest.raises(ValueError, match=message):
        sample(model, tok, ["hi"], **kwargs)


def test_empty_prompt_list(stopping):
    model, tok = stopping
    assert len(sample(model, tok, [], n=2)) == 0


@pytest.mark.parametrize("engine", ["compact", "generate"])
def test_stop_tokens_end_a_completion_like_eos(stopping, prompts, engine):
    """``stop_ids`` (``sampling.stop``): the completion ends at the first stop token, kept as its
    last token and counted as finished; no stop token appears before it."""
    model, tok = stopping
    free = sample(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=32, seed=0, engine=engine)
    counts: dict[int, int] = {}
    for ids in free.completion_ids:
        for token in ids[:-1]:
            counts[token] = counts.get(token, 0) + 1
    stops = sorted(counts, key=counts.get)[-2:]  # the two most frequent tokens: some row meets one
    batch = sample(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=32, seed=0, engine=engine,
                   stop_ids=stops)
    ends = set(stops) | {EOS}
    for ids, finished in zip(batch.completion_ids, batch.finished):
        assert finished == (ids[-1] in ends)
        assert not ends & set(ids[:-1])
        if not finished:
            assert len(ids) == 32
    assert any(ids[-1] in stops for ids in batch.completion_ids)


def test_stop_strings_must_be_single_tokens(stopping):
    from expo_rl.policy import stop_token_ids

    _, tok = stopping
    word = tok.convert_ids_to_tokens(5)
    single = tok.convert_tokens_to_string([word])
    assert stop_token_ids(tok, [single]) == tok(single, add_special_tokens=False)["input_ids"]
    with pytest.raises(ValueError, match="exactly one token"):
        stop_token_ids(tok, ["a long stop string of many tokens"])
