"""Issue 14: the GRPO-family presets train end to end; several weighted rewards per term are each
logged and summed; dynamic sampling counts what it resamples; the overlong penalty's values."""

from types import SimpleNamespace

import pytest

from expo_rl.cli import main
from expo_rl.data import Problem
from expo_rl.engine.config import load_config
from expo_rl.engine.metrics import read_metrics
from expo_rl.engine.typed_config import ConfigError
from expo_rl.sources import SourceEnv, StepContext
from expo_rl.sources.on_policy import OnPolicy, OnPolicyOptions, zero_signal_groups
from expo_rl.verify import overlong_penalty

VARIANTS = ["clip_higher", "overlong_filter", "dynamic_sampling", "gspo", "rloo", "reinforce_pp",
            "dr_grpo", "dapo"]


def tenth_of_length(completion, reference, *, completion_tokens, scale=10.0, **fields):
    """A user reward ('module:function'): completion length / scale."""
    return completion_tokens / scale


def _train(tmp_path, preset, *overrides):
    out = tmp_path / preset
    assert main(["train", preset, "--set", f"train.output_dir={out}", "--set", "train.progress=false",
                 "--set", "train.tensorboard=false", "--set", "sampling.draw=inverse_cdf", *overrides]) == 0
    return read_metrics(out / "metrics.jsonl")


@pytest.mark.parametrize("preset", VARIANTS)
def test_variant_preset_trains_end_to_end(preset, tmp_path):
    rows = _train(tmp_path, preset)
    config = load_config(preset)
    label = config.terms[0].label
    assert [r["step"] for r in rows] == [1, 2] and all(f"{label}/objective" in r for r in rows)
    if preset in ("dynamic_sampling", "dapo"):
        # a random tiny model never writes \boxed{}: every group is zero-signal, the budget is spent
        assert all(r[f"{label}/dynamic_resampled"] == 4 for r in rows)
        assert all(r[f"{label}/dynamic_kept_zero_signal"] == 2 for r in rows)
    if preset == "overlong_filter":
        assert all(f"{label}/overlong_filtered" in r for r in rows)


def test_two_weighted_rewards_are_logged_and_summed(tmp_path):
    rows = _train(tmp_path, "grpo", "--set", "terms.0.reward=null", "--set",
                  "terms.0.rewards=[{name: format, weight: 0.5}, {name: 'test_variants_train:tenth_of_length', "
                  "weight: 2.0, args: {scale: 4.0}, label: length}]", "--set", "train.steps=1")
    row = rows[0]
    assert {"grpo/reward/format", "grpo/reward/length"} <= set(row)
    assert row["grpo/reward/length"] > 0  # mean completion length / 4
    assert row["grpo/reward/length"] == pytest.approx(row["grpo/response_len"] / 4)
    expected = 0.5 * row["grpo/reward/format"] + 2.0 * row["grpo/reward/length"]
    assert row["grpo/reward_mean"] == pytest.approx(expected, rel=1e-9)


def test_reward_list_config_errors():
    with pytest.raises(ConfigError, match="set either 'reward'"):
        load_config("grpo", ["terms.0.rewards=[{name: format}]"])  # the preset sets reward: format
    with pytest.raises(ConfigError, match=r"terms.0.rewards.1.name': 'nope' is not allowed"):
        load_config("grpo", ["terms.0.reward=null", "terms.0.rewards=[{name: format}, {name: nope}]"])
    with pytest.raises(ConfigError, match="labels must differ"):
        load_config("grpo", ["terms.0.reward=null", "terms.0.rewards=[{name: format}, {name: format}]"])
    with pytest.raises(ConfigError, match=r"unknown key 'terms.0.rewards.0.wieght'"):
        load_config("grpo", ["terms.0.reward=null", "terms.0.rewards=[{name: format, wieght: 2}]"])


def test_overlong_penalty_is_daps_soft_punishment():
    values = [overlong_penalty("", "", completion_tokens=n, max_new_tokens=20, cache=4) for n in (10, 16, 17, 19, 20, 21)]
    assert values == [0.0, 0.0, -0.25, -0.75, -1.0, -1.0]
    assert overlong_penalty("", "", completion_tokens=16, max_new_tokens=20) == -0.2  # cache = 20 // 4 = 5


def _fake_env(flat_questions):
    """A source env whose 'sampler' writes '<question>#<j>' and whose reward is 0 for every
    output of a question in ``flat_questions`` and j % 2 otherwise."""
    calls = []

    def sample(model, prompts, *, n, seed):
        calls.append((len(prompts), seed))
        index = [i for i in range(len(prompts)) for _ in range(n)]
        texts = [f"{prompts[i]}#{j}" for i in range(len(prompts)) for j in range(n)]
        return SimpleNamespace(prompt_index=index, prompt_ids=[[1]] * len(texts),
                               completion_ids=[[2, 3]] * len(texts), texts=texts,
                               finished=[True] * len(texts))

    def score(rows):
        for row in rows:
            if row.reward is None:
                question, j = row.completion.split("#")
                row.reward = 0.0 if question in flat_questions else float(int(j) % 2)

    env = SourceEnv(name="t", tokenizer=None, prompt=lambda p: p.question, sample=sample, frozen_policy=lambda: None,
                    score=score, gather=list)
    return env, calls


def test_dynamic_sampling_replaces_zero_signal_groups_and_counts_them():
    problems = [Problem(f"p{i}", f"q{i}", "1") for i in range(6)]
    env, calls = _fake_env({"q0", "q1", "q2"})  # half the questions never give a signal
    options = OnPolicyOptions(questions_per_step=4, group_size=2, shuffle=False, dynamic_sampling=True,
                              max_resample=3)
    source = OnPolicy(problems, options, env)
    rows = source.next_rows(StepContext(step=1, policy=None))
    stats = source.metrics()
    # step 1 takes q0..q3: three flat groups; each replacement round draws as many as are flat
    assert stats["dynamic_resampled"] == stats["dynamic_dropped"] == 3
    assert stats["dynamic_resampled"] + 4 == sum(n for n, _ in calls)
    assert len(rows) == 4 * 2  # the batch keeps its size
    assert stats["dynamic_kept_zero_signal"] == len(zero_signal_groups(rows))
    assert source.metrics()["dynamic_resampled"] == 0  # counts are per step
    off = OnPolicy(problems, OnPolicyOptions(questions_per_step=4, group_size=2, shuffle=False), env)
    assert off.metrics() == {} and len(zero_signal_groups([*off.next_rows(StepContext(1, None))])) == 0


def test_dynamic_sampling_is_deterministic_per_step():
    problems = [Problem(f"p{i}", f"q{i}", "1") for i in range(6)]
    picks = []
    for _ in range(2):
        env, _ = _fake_env({"q0", "q1"})
        source = OnPolicy(problems, OnPolicyOptions(questions_per_step=2, group_size=2, shuffle=False,
                                                    dynamic_sampling=True, max_resample=5), env)
        picks.append([r.completion for r in source.next_rows(StepContext(step=3, policy=None))])
    assert picks[0] == picks[1]
