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
