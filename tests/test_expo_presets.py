"""Every ExPO preset trains end to end on the tiny model through ``expo-rl train``."""

import pytest

from expo_rl.cli import main
from expo_rl.engine.config import load_config, preset_names
from expo_rl.engine.metrics import read_metrics
from expo_rl.expo.explanations import read_explanations

EXPO_PRESETS = ["exp_grpo", "grpo_sft_gt_cot", "exp_dpo_offline", "exp_dpo_online", "dpo_expert_cot"]


def test_expo_presets_ship_for_tiny_and_gpu():
    names = set(preset_names())
    assert set(EXPO_PRESETS) <= names
    for name in EXPO_PRESETS:
        config = load_config(f"gpu/{name}")
        assert config.train.mixed_precision == "bf16" and not config.model.policy.startswith("tiny:")


@pytest.mark.parametrize("name", EXPO_PRESETS)
def test_expo_preset_trains_end_to_end(name, tmp_path):
    out = tmp_path / name
    assert main(["train", name, "--set", f"train.output_dir={out}", "--set", "train.progress=false",
                 "--set", "train.tensorboard=false"]) == 0
    config = load_config(name)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, config.train.steps + 1))
    labels = [t.label for t in config.terms]
    for row in rows:
        for label in labels:
            assert row[f"{label}/rows"] > 0, (label, row)
    if name in ("exp_grpo", "grpo_sft_gt_cot"):
        # the ExP-SFT term logs its rows' per-token NLL; GRPO logs its zero-signal groups
        assert all(row[f"{labels[1]}/nll"] > 0 for row in rows)
        assert all("grpo/zero_signal_groups" in row for row in rows)
    else:
        assert all(f"{labels[0]}/loss" in row for row in rows)
    if name in ("exp_grpo", "exp_dpo_offline", "exp_dpo_online"):
        # explanations are generated at step 1: their acceptance rate is in that step's log
        assert 0.0 <= rows[0][f"{labels[-1]}/explain_acceptance_rate"] <= 1.0
        assert rows[0][f"{labels[-1]}/explain_total"] > 0
    cache = out / "cache" / f"{labels[-1]}.jsonl"
    offline_explanations = name in ("exp_grpo", "exp_dpo_offline")
    assert cache.exists() == offline_explanations
    if offline_explanations:
        explanations = read_explanations(cache)
        assert explanations and all(e.positive and e.policy["hash"] for e in explanations)


@pytest.mark.parametrize("refresh", [True, False])
def test_online_exp_dpo_can_refresh_the_reference_the_step_uses(tmp_path, refresh):
    """refresh_reference: at the regeneration of step 3 pi_ref becomes the policy of that moment,
    so the step's DPO margin is exactly 0 again (policy = reference); without it the reference
    stays the initial policy (SPEC 3.4) and the margin keeps what two updates moved."""
    out = tmp_path / "run"
    assert main(["train", "exp_dpo_online", "--set", "train.steps=3", "--set", f"train.output_dir={out}",
                 "--set", "train.progress=false", "--set", "train.tensorboard=false",
                 "--set", f"terms.0.source_args.refresh_reference={str(refresh).lower()}"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    margins = [r["exp_dpo/margin"] for r in rows]
    assert margins[0] == 0.0 and abs(margins[1]) > 1e-3  # step 1: pi_theta = pi_ref; step 2: moved
    assert rows[-1]["exp_dpo/pairs_reference_refreshes"] == float(refresh)
    if refresh:
        assert abs(margins[2]) <= 1e-6
    else:
        assert abs(margins[2]) > 1e-3
