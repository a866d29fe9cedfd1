"""The demo report's statements are computed from the measured tables, never written in advance."""

from __future__ import annotations

import json
from pathlib import Path

from expo_rl.cli import main
from expo_rl.demo.report import expert_sentence, mechanism_sentence, outcome_sentence, task_sentence
from expo_rl.tasks.modular import TASK as MODULAR

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
    assert "+37.5 points from GRPO's" in outcome_sentence(0.375, 5)
    assert "did NOT become held-out accuracy" in outcome_sentence(0.02, 5)
    assert "(here a table)" in outcome_sentence(0.02, 5, "a table") and "(here" not in outcome_sentence(0.02, 5)
    assert "No ExP-GRPO vs GRPO comparison" in outcome_sentence(None, 5)


EASY_TASK = Path(__file__).parent / "fixtures" / "demo_easy_task.py"


def test_a_user_task_whose_hardest_level_is_easy_gets_no_borrowed_claims(tmp_path):
    """The report of a user task says nothing the run did not measure: no sentence about the
    built-in modular task, and no "hard level" mechanism when its base model solves the hardest
    level (measured pass@8 above the threshold)."""
    out = tmp_path / "coin"
    assert main(["demo", "--task", str(EASY_TASK), "--budget", "tiny", "--out", str(out), "--no-progress",
                 "--threads", "1", "--workers", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["methods"]["base"]["by_level"]["5"]["pass@8"] >= 0.10  # easy for its base model, measured
    text = (out / "report.md").read_text().lower()
    for borrowed in ("modular", "mod p", "inverse", "three modular equations"):
        assert borrowed not in text, borrowed
    assert "rarely samples a right answer" not in text and "sets up the paper's setting" not in text
    assert "level 5 was not hard for this base model" in text


def _mechanism_report(base_l5: float, coverage: float) -> dict:
    return {"task": "modular", "task_description": MODULAR.description,
            "task_hard_level_skill": MODULAR.hard_level_skill,
            "methods": {"base": {"by_level": {"5": {"pass@1": base_l5 / 8, "pass@8": base_l5}}}},
            "training": {"grpo": {"zero_signal_fraction_mean": 0.93}},
            "diagnostics": {"explanation_coverage": coverage}}


def test_the_builtin_task_report_states_its_task_and_the_mechanism_from_its_measurements():
    report = _mechanism_report(base_l5=0.078, coverage=0.95)
    assert "three modular equations" in task_sentence(report)
    line = mechanism_sentence(report, 5)
    assert "rarely samples a right answer (pass@8 7.8%)" in line and "93% of GRPO's groups" in line
    assert "for 95% of the diagnostic questions" in line
    # the same task with a base model that solves level 5: the claim goes, the measurement stays
    assert "was NOT hard for this base model (pass@8 45.8%" in mechanism_sentence(_mechanism_report(0.458, 0.95), 5)
    assert "no accepted self-explanation" in mechanism_sentence(_mechanism_report(0.05, 0.0), 5)
