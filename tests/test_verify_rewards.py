"""Reward callables, the registry, and ``batch_rewards`` on real MATH/GSM8K rows."""

import functools
import time

import pytest

from expo_rl.data import load_problems
from expo_rl.verify import (
    REWARDS,
    batch_rewards,
    clear_cache,
    correctness_reward,
    format_reward,
    get_reward,
    register_reward,
    verifier_stats,
)


def test_correctness_on_expert_solutions_and_a_wrong_one():
    problems = load_problems("math500", limit=5).problems
    assert [correctness_reward(p.solution, p.answer) for p in problems] == [1.0] * 5
    assert correctness_reward("so \\boxed{17}", problems[0].answer) == 0.0
    assert correctness_reward("I have no idea", problems[0].answer) == 0.0


def test_gsm8k_reference_as_number_or_raw_text():
    problem = load_problems("gsm8k", limit=1).problems[0]
    assert correctness_reward("She makes \\boxed{\\$18} a day.", problem.answer) == 1.0
    assert correctness_reward(problem.extra["raw_answer"], problem.answer) == 1.0
    # a raw GSM8K answer as reference is reduced to its number
    assert correctness_reward("The answer is 18.", problem.extra["raw_answer"]) == 1.0


def test_strict_versus_lenient_parsing():
    assert correctness_reward("The answer is 7.", "7") == 1.0
    assert correctness_reward("The answer is 7.", "7", strict=True) == 0.0
    assert get_reward("correctness_strict")("The answer is 7.", "7") == 0.0
    assert get_reward("correctness_strict")("\\boxed{7}", "7") == 1.0


def test_format_reward():
    assert format_reward("blah \\boxed{x+1}", "anything") == 1.0
    assert format_reward("the answer is 3", "3") == 0.0
    assert format_reward("cut off \\boxed{\\frac{1}{", "3") == 0.0


def test_registry_names_and_errors():
    assert {"correctness", "correctness_strict", "format"} <= set(REWARDS)
    assert get_reward("correctness") is correctness_reward
    with pytest.raises(ValueError, match="unknown reward 'corectness'; allowed: correctness, "):
        get_reward("corectness")

    @register_reward("test_length_penalty")
    def length_penalty(completion, reference, **row):
        return -len(completion) / 100

    try:
        assert get_reward("test_length_penalty")("abcd", "x") == -0.04
        with pytest.raises(ValueError, match="already registered"):
            register_reward("test_length_penalty")(lambda c, r, **k: 0.0)
    finally:
        REWARDS.pop("test_length_penalty")


def test_batch_rewards_matches_one_by_one_and_passes_row_fields():
    problems = load_problems("math500", limit=6).problems
    completions = [p.solution if i % 2 == 0 else "\\boxed{-999}" for i, p in enumerate(problems)]
    references = [p.answer for p in problems]
    rows = [{"level": p.level, "subject": p.subject, "completion": "ignored"} for p in problems]
    expected = [correctness_reward(c, r) for c, r in zip(completions, references)]
    assert expected == [1.0, 0.0] * 3
    assert batch_rewards(correctness_reward, completions, references, rows) == expected

    def level_weighted(completion, reference, *, level, subject):
        return correctness_reward(completion, reference) * level

    got = batch_rewards(level_weighted, completions, references, rows)
    assert got == [e * p.level for e, p in zip(expected, problems)]


def test_batch_rewards_scores_a_timeout_zero_and_counts_it():
    clear_cache()
    quick = functools.partial(correctness_reward, timeout_s=1.0)
    completions = ["\\boxed{9^{9^{9^{9}}}}", "\\boxed{\\frac{1}{2}}", "\\boxed{0.25}", "#### 4"]
    references = ["3", "0.5", "\\frac14", "4"]
    before = verifier_stats.snapshot()
    start = time.perf_counter()
    rewards = batch_rewards(quick, completions, references)
    elapsed = time.perf_counter() - start
    assert rewards == [0.0, 1.0, 1.0, 1.0]
    delta = verifier_stats.difference(verifier_stats.snapshot(), before)
    assert delta["timeouts"] == 1 and delta["reward_calls"] == 4
    assert elapsed < 30


def test_batch_rewards_input_errors():
    with pytest.raises(ValueError, match="2 completions but 1 references"):
        batch_rewards(correctness_reward, ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="2 completions but 3 rows"):
        batch_rewards(correctness_reward, ["a", "b"], ["a", "b"], [{}, {}, {}])

    def broken(completion, reference, **row):
        raise KeyError("level")

    with pytest.raises(RuntimeError, match="reward 'broken' failed on row 0: KeyError"):
        batch_rewards(broken, ["a", "b"], ["a", "b"])
    assert batch_rewards(correctness_reward, [], []) == []
