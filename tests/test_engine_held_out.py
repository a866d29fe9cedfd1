"""Held-out evaluation during and after training (``eval.*``): every `expo-rl train` run has it."""

from __future__ import annotations

import json

from expo_rl.cli import main
from expo_rl.engine.metrics import read_metrics

QUIET = ["--set", "train.progress=false", "--set", "train.tensorboard=false"]


def test_eval_every_logs_pass_at_k_per_level_and_draws_curves(tmp_path):
    """The issue's command: `expo-rl train grpo --set eval.every=2 --set train.steps=4`."""
    out = tmp_path / "run"
    assert main(["train", "grpo", "--set", "eval.every=2", "--set", "train.steps=4", *QUIET,
                 "--set", f"train.output_dir={out}"]) == 0
    records = {r["step"]: r for r in read_metrics(out / "metrics.jsonl")}
    evaluated = sorted(step for step, r in records.items() if "eval/L1/pass@1" in r)
    assert evaluated == [0, 2, 4]  # before step 1, then every 2 steps
    for level in range(1, 6):  # MATH-500's levels, two questions each (the preset's eval.limit)
        for k in (1, 2):
            assert 0.0 <= records[4][f"eval/L{level}/pass@{k}"] <= 1.0
    assert (out / "plots" / "eval.png").stat().st_size > 1000


def test_final_evaluation_writes_eval_final_json(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "grpo", "--set", "eval.final_n=2", "--set", "eval.final_k=[1,2]", *QUIET,
                 "--set", f"train.output_dir={out}", "--set", "train.plot=false"]) == 0
    final = json.loads((out / "eval_final.json").read_text())
    assert final["step"] == 2 and final["n"] == 2 and final["ks"] == [1, 2]
    assert set(final["by_level"]) == {"1", "2", "3", "4", "5"}
    assert final["questions_per_level"]["1"] >= 2  # every held-out question, not eval.limit
    last = read_metrics(out / "metrics.jsonl")[-1]
    assert last["eval_final/L3/pass@2"] == final["by_level"]["3"]["pass@2"]


def test_eval_without_questions_is_a_config_error(tmp_path, capsys):
    assert main(["train", "sft", "--set", "eval.data=null", "--set", "eval.every=1",
                 "--set", f"train.output_dir={tmp_path}"]) == 2
    assert "config key 'eval.data' is required" in capsys.readouterr().err


def test_eval_initial_writes_the_before_table_and_stop_strings_end_completions(tmp_path):
    """``eval.initial``: the final evaluation's table before step 1 (``eval_initial.json``), so a run
    reports before and after on the same questions and draws; ``sampling.stop`` in the same run."""
    out = tmp_path / "run"
    assert main(["train", "grpo", "--set", "eval.final_n=2", "--set", "eval.final_k=[1,2]",
                 "--set", "eval.initial=true", "--set", 'sampling.stop=["\\n"]', *QUIET,
                 "--set", f"train.output_dir={out}", "--set", "train.plot=false"]) == 0
    initial = json.loads((out / "eval_initial.json").read_text())
    final = json.loads((out / "eval_final.json").read_text())
    assert initial["step"] == 0 and final["step"] == 2
    assert initial["questions_per_level"] == final["questions_per_level"] and initial["n"] == final["n"] == 2
    records = {r["step"]: r for r in read_metrics(out / "metrics.jsonl")}
    assert records[0]["eval_initial/L1/pass@2"] == initial["by_level"]["1"]["pass@2"]
    assert all(k.startswith("eval_initial/") for k in records[0] if k.startswith("eval"))


def test_eval_initial_needs_final_n_and_stop_strings_must_be_one_token(tmp_path, capsys):
    assert main(["train", "grpo", "--set", "eval.initial=true", "--set", f"train.output_dir={tmp_path / 'a'}"]) == 2
    assert "config key 'eval.initial'" in capsys.readouterr().err
    assert main(["train", "grpo", "--set", 'sampling.stop=["a stop string of several tokens"]', *QUIET,
                 "--set", f"train.output_dir={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err
    assert "config key 'sampling.stop'" in err and "exactly one token" in err
