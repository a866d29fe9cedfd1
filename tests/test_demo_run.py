"""``expo-rl demo`` end to end: the report's structure, and a user-defined task in one file.

CI runs ``--quick`` on the shipped base model (the issue's acceptance check: structure and
probabilities, never specific numbers); a second task from tests/fixtures goes through
``--task path`` with the hidden ``--budget tiny`` (a 2-layer base model built in seconds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from expo_rl.cli import main

FIXTURE = Path(__file__).parent / "fixtures" / "demo_digit_sum_task.py"
LEVELS = {"1", "2", "3", "4", "5"}
TABLE3 = {"base", "grpo", "grpo_sft_gt_cot", "exp_grpo"}


def check_report(out: Path, methods: set[str], seeds: int) -> dict:
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == methods
    assert report["seeds"] == list(range(seeds))
    assert report["wall_seconds"] > 0
    for name, entry in report["methods"].items():
        assert set(entry["by_level"]) == LEVELS, name
        for level, cell in entry["by_level"].items():
            for key in ("pass@1", "pass@8"):
                assert 0.0 <= cell[key] <= 1.0 and not math.isnan(cell[key]), (name, level, key)
                per_seed = cell["per_seed"][key]
                assert len(per_seed) == seeds and all(0.0 <= v <= 1.0 for v in per_seed)
                assert math.isclose(cell[key], sum(per_seed) / seeds)
            assert cell["pass@1"] <= cell["pass@8"] + 1e-9  # pass@k grows with k
    text = (out / "report.md").read_text()
    assert "Table 3 shape" in text and report["command"] in text
    for name in report["figures"].values():
        assert (out / name).stat().st_size > 1000 and name in text  # every PNG is embedded
    assert any(n.startswith("curves_") for n in report["figures"].values())
    assert {"zero_signal", "diagnostics_nll"} <= set(report["figures"])
    return report


def test_user_task_in_one_file_runs_through_the_demo(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--task", str(FIXTURE), "--budget", "tiny", "--out", str(out),
                 "--no-progress", "--threads", "1"]) == 0
    report = check_report(out, TABLE3, seeds=1)
    assert report["task"] == "digit_sum"
    assert (out / "base_model" / "config.json").is_file()  # its own base model, built with SFT
    assert report["base_model"]["task"] == "digit_sum"


@pytest.mark.slow
def test_quick_demo_report_structure(tmp_path):
    out = tmp_path / "quick"
    assert main(["demo", "--quick", "--out", str(out), "--no-progress"]) == 0
    report = check_report(out, TABLE3, seeds=1)
    assert report["budget"] == "quick" and report["task"] == "modular"
    diag = report["diagnostics"]
    for kind in ("self_explanation", "expert", "own"):
        assert diag[kind]["n"] >= 0


def test_full_method_set_runs_and_states_the_dpo_comparison(tmp_path):
    """The ``--full`` method set (refreshed ExP-GRPO, the ExP-DPO / expert-DPO grid, Figure 6) on
    the user task with the tiny budget: online methods regenerate at step 3 (refresh every 2)."""
    from expo_rl.demo.budgets import get_budget
    from expo_rl.demo.methods import full_methods
    from expo_rl.demo.run import DemoConfig, run_demo

    out = tmp_path / "full"
    budget = get_budget("tiny")
    methods = full_methods()
    run_demo(DemoConfig(task_spec=str(FIXTURE), budget=budget, methods=methods, seeds=[0], out_dir=out,
                        rebuild_base=False, command="expo-rl demo --full (test)", progress=False))
    report = check_report(out, {"base"} | {m.name for m in methods}, seeds=1)
    text = (out / "report.md").read_text()
    assert "Table 2 shape" in text and "offline: c~ vs c_E" in text and "online vs offline" in text
    assert "figure6_dpo" in report["figures"]


def _results(report: dict) -> dict:
    """What a run measured, without how long it took or where it ran."""
    training = {name: {k: v for k, v in entry.items() if k != "seconds_per_seed"}
                for name, entry in report["training"].items()}
    return {"methods": report["methods"], "training": training, "diagnostics": report["diagnostics"],
            "base_model": report["base_model"]["final_nll"]}


def test_worker_processes_reproduce_the_single_process_run(tmp_path):
    """Every job seeds its own random streams, so two spawned worker processes (each loading the
    user task from its file and the base model from disk, jobs finishing in any order) write the
    same tables as one process, seeds and methods in the same order."""
    reports = {}
    for workers in ("1", "2"):
        out = tmp_path / f"workers{workers}"
        assert main(["demo", "--task", str(FIXTURE), "--budget", "tiny", "--seeds", "2", "--out", str(out),
                     "--no-progress", "--threads", "1", "--workers", workers]) == 0
        reports[workers] = check_report(out, TABLE3, seeds=2)
    assert reports["2"]["machine"]["workers"] == 2 and reports["1"]["machine"]["workers"] == 1
    assert _results(reports["2"]) == _results(reports["1"])


@pytest.mark.parametrize("flag", ["--workers", "--threads"])
def test_bad_parallelism_is_a_clear_error(tmp_path, capsys, flag):
    assert main(["demo", "--budget", "tiny", flag, "0", "--out", str(tmp_path / "x")]) == 2
    assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("cores, load, runs, expected", [
    (2, 0.1, 3, (1, 2)),     # one seed of the default demo: one process, both cores' threads
    (2, 0.1, 9, (2, 1)),     # --seeds 3: a worker per core
    (16, 0.5, 24, (12, 1)),  # --full --seeds 3 on a big machine: one worker per two runs
    (2, 1.5, 9, (1, 1)),     # busy machine: one process, one thread
])
def test_default_parallelism_follows_the_machine(monkeypatch, cores, load, runs, expected):
    import os

    from expo_rl.commands.demo import parallelism

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert parallelism(None, None, runs) == expected
    assert parallelism(3, None, runs)[0] == 3 and parallelism(None, 5, runs)[1] == 5


def test_a_failing_job_in_a_worker_surfaces_its_error(tmp_path):
    """A bug in a user's task (here its verifier) stops the run with the task's own error, raised
    in the parent process, instead of hanging or losing the message in a worker."""
    broken = tmp_path / "broken_task.py"
    broken.write_text(FIXTURE.read_text() + (
        "\n\nclass BrokenVerifier(DigitSumTask):\n"
        "    def verify(self, problem, completion):\n"
        "        raise ValueError('broken verifier of the user task')\n\n\n"
        "TASK = BrokenVerifier()\n"))
    # the reward layer names the reward and row and keeps the task's own message
    with pytest.raises(RuntimeError, match="ValueError: broken verifier of the user task"):
        main(["demo", "--task", str(broken), "--budget", "tiny", "--seeds", "2", "--out", str(tmp_path / "o"),
              "--no-progress", "--threads", "1", "--workers", "2"])


def test_a_report_row_is_reproduced_by_its_expo_rl_train_command(tmp_path):
    """The demo trains nothing itself: each row names the preset and the ``expo-rl train`` command
    that produced it, and running that command again gives the row's numbers."""
    import shlex

    out = tmp_path / "demo"
    assert main(["demo", "--task", str(FIXTURE), "--budget", "tiny", "--out", str(out), "--no-progress",
                 "--threads", "1", "--workers", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    command = report["runs"]["exp_grpo"]["commands"][0]
    assert report["runs"]["exp_grpo"]["preset"] == "demo/exp_grpo" and command in (out / "report.md").read_text()
    words = shlex.split(command)
    assert words[:3] == ["expo-rl", "train", "demo/exp_grpo"]
    rerun = tmp_path / "rerun"
    assert main(words[1:] + ["--set", f"train.output_dir={rerun}", "--set", "train.progress=false"]) == 0
    final = json.loads((rerun / "eval_final.json").read_text())["by_level"]
    for level, cell in report["methods"]["exp_grpo"]["by_level"].items():
        for key in ("pass@1", "pass@8"):
            assert final[level][key] == cell["per_seed"][key][0], (level, key)


def test_the_demo_package_has_no_trainer_of_its_own():
    """No optimiser, backward pass or training step under expo_rl/demo: every run goes through
    ``expo-rl train`` (the issue's grep, as a test)."""
    import re

    demo = Path(__file__).resolve().parent.parent / "expo_rl" / "demo"
    pattern = re.compile(r"\.backward\(|optimizer\.step\(|build_optimizer|training_step\(")
    offending = [f"{path.name}:{n}" for path in demo.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert offending == []
