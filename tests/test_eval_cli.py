"""``expo-rl eval`` end to end on a tiny random model: the table, eval.json and samples.jsonl."""

import json
import os
import subprocess
import sys

import pytest

from expo_rl.cli import main


def test_expo_rl_eval_tiny_end_to_end(tmp_path):
    out = tmp_path / "eval_tiny"
    # One OpenMP thread: a tiny model gains nothing from more, and they thrash on a busy machine.
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-m", "expo_rl.cli", "eval", "--model", "tiny:qwen2", "--data", "math500",
         "--limit", "3", "--n", "2", "--k", "1,2", "--max-new-tokens", "8", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "pass@1" in done.stdout and "pass@2" in done.stdout
    assert done.stdout.strip().splitlines()[-1].endswith("eval.json")
    report = json.loads((out / "eval.json").read_text())
    assert report["n_problems"] == 3 and report["n_samples"] == 2 and report["n_completions"] == 6
    assert set(report["pass_at_k"]) == {"1", "2"}
    assert all(0.0 <= v <= 1.0 for v in report["pass_at_k"].values())
    levels = {str(level) for level in report["problems_per_level"]}
    assert set(report["by_level"]) == levels and sum(report["problems_per_level"].values()) == 3
    assert all(set(row) == {"1", "2"} for row in report["by_level"].values())
    assert report["by_subject"]
    per_problem = report["per_problem"]
    assert [p["n"] for p in per_problem] == [2, 2, 2]
    assert all(0 <= p["correct"] <= 2 for p in per_problem)
    assert {"calls", "timeouts", "pred_parse_failures"} <= set(report["verifier"])
    assert report["wall_time_s"] > 0 and report["settings"]["model"] == "tiny:qwen2"
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and {s["problem_id"] for s in samples} == {p["id"] for p in per_problem}
    assert "eval: 100%" in done.stderr  # the tqdm bar, on stderr


@pytest.mark.parametrize("argv,message", [
    (["--n", "2", "--k", "1,4"], "--k 1,4 needs --n >= 4"),
    (["--data", "math5000"], "unknown data 'math5000'"),
    (["--reward", "nope"], "unknown reward 'nope'"),
])
def test_eval_bad_arguments_are_clear_errors(tmp_path, capsys, argv, message):
    code = main(["eval", "--model", "tiny:qwen2", "--out", str(tmp_path), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
