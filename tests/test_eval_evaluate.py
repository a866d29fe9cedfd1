"""``evaluate`` with a tiny random model (real transformers generate) and the real verifier."""

import pytest
import torch

from expo_rl.data import load_problems
from expo_rl.eval import evaluate
from expo_rl.policy import load_policy


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny matmuls gain nothing from threads, and on a shared 2-core machine OpenMP threads
    # spinning against other jobs made each decode step ~50x slower (measured: 14.8 s -> 0.25 s).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = load_policy("tiny:qwen2")
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def problems():
    return load_problems("math500", limit=3).problems


def run(tiny, problems, reward_fn, **kw):
    model, tokenizer = tiny
    settings = dict(n=2, ks=[1, 2], temperature=1.0, max_new_tokens=6, seed=3,
                    show_progress=False, reward_fn=reward_fn)
    settings.update(kw)
    with torch.no_grad():
        return evaluate(model, tokenizer, problems, **settings)


def test_counts_follow_the_reward(tiny, problems):
    # A reward that knows the problem: correct exactly on the level-2 problem(s).
    def level_two(completion, reference, *, level, **row):
        return 1.0 if level == 2 else 0.0

    result = run(tiny, problems, level_two, keep_samples=True)
    assert result.n_problems == 3 and result.n_samples == 2
    assert [s.correct for s in result.per_problem] == [2 if p.level == 2 else 0 for p in problems]
    share = sum(p.level == 2 for p in problems) / 3
    assert result.pass_at_k == {1: pytest.approx(share), 2: pytest.approx(share)}
    assert result.by_level["2"] == {1: 1.0, 2: 1.0}
    assert len(result.samples) == 6 and {s.sample for s in result.samples} == {0, 1}
    # every completion is at most max_new_tokens long; truncation is reported, not hidden
    assert all(s.n_tokens <= 6 for s in result.samples)
    assert result.truncated == pytest.approx(sum(not s.finished for s in result.samples) / 6)


def test_same_seed_same_samples_and_chunking(tiny, problems):
    def one(completion, reference, **row):
        return 1.0

    a = run(tiny, problems[:2], one, keep_samples=True, batch_size=2)
    b = run(tiny, problems[:2], one, keep_samples=True, batch_size=2)
    assert [s.text for s in a.samples] == [s.text for s in b.samples]
    assert a.pass_at_k == {1: 1.0, 2: 1.0}


def test_k_larger_than_n_is_rejected(tiny, problems):
    with pytest.raises(ValueError, match="pass@4 needs n >= 4"):
        run(tiny, problems, lambda c, r, **k: 0.0, ks=[1, 4])
