"""The demo report's statements are computed from the measured tables, never written in advance."""

from __future__ import annotations

from expo_rl.demo.report import expert_sentence, outcome_sentence

LEVELS = (1, 2, 3, 4, 5)


def _report(**pass_at: tuple[list[float], list[float]]) -> dict:
    """methods -> by_level from (pass@1 per level, pass@8 per level)."""
    return {"methods": {name: {"by_level": {str(lv): {"pass@1": p1[i], "pass@8": p8[i]}
                                            for i, lv in enumerate(LEVELS)}}
                        for name, (p1, p8) in pass_at.items()}}


BASE = ([1.0, 0.98, 0.9, 0.05, 0.01], [1.0, 1.0, 1.0, 0.2, 0.06])
EXP = ([1.0, 0.97, 0.83, 0.16, 0.08], [1.0, 1.0, 1.0, 0.6, 0.43])


def test_expert_sft_that_wins_the_hard_level_but_wrecks_the_rest_is_reported_as_such():
    expert = ([0.07, 0.03, 0.0, 0.01, 0.14], [0.37, 0.19, 0.02, 0.09, 0.62])
    line = expert_sentence(_report(base=BASE, exp_grpo=EXP, grpo_sft_gt_cot=expert), LEVELS)
    assert "level-5 pass@8 62.0 vs 43.0" in line
    assert "mean pass@1 over levels 1-4 2.8 vs 74.0 (base model 73.2)" in line
    assert "not reproduced here" in line and "costs SFT-GT-CoT 70.5 points" in line


def test_expert_sft_below_exp_grpo_makes_no_claim_against_the_paper():
    expert = ([0.9, 0.9, 0.8, 0.05, 0.02], [1.0, 1.0, 1.0, 0.2, 0.1])
    line = expert_sentence(_report(base=BASE, exp_grpo=EXP, grpo_sft_gt_cot=expert), LEVELS)
    assert "level-5 pass@8 10.0 vs 43.0" in line and "not reproduced" not in line


def test_without_the_expert_method_the_sentence_compares_nothing():
    assert "vs" not in expert_sentence(_report(base=BASE, exp_grpo=EXP), LEVELS)


def test_outcome_sentence_follows_the_measured_gap():
    assert "+37.5 points above" in outcome_sentence(0.375, 5)
    assert "did NOT become held-out accuracy" in outcome_sentence(0.02, 5)
    assert "No ExP-GRPO vs GRPO comparison" in outcome_sentence(None, 5)
