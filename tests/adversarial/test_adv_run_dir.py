"""Output directories with an owner: a used directory is refused without --resume/--overwrite, a
live writer's lock refuses a second one (train, eval, explain, diagnose), a stale lock is taken
over, and a save that cannot succeed fails before training (issue 16, worst cases 2 and 4)."""

import json
import subprocess
import sys
import textwrap

import pytest
from adversarial_helpers import sft_args

from expo_rl.cli import main
from expo_rl.engine import run_dir
from expo_rl.engine.metrics import read_metrics
from expo_rl.errors import RunDirError


def test_second_run_in_a_used_directory_is_refused_then_overwritten(tmp_path, problems_file, capsys):
    out = tmp_path / "run"
    assert main(sft_args(out, problems_file)) == 0
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()

    assert main(sft_args(out, problems_file, "--set", "train.steps=2")) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_text() == before  # the first run is untouched

    assert main(sft_args(out, problems_file, "--set", "train.steps=2", "--resume", "--overwrite")) == 2
    assert "give one of them" in capsys.readouterr().err

    assert main(sft_args(out, problems_file, "--set", "train.steps=2", "--set", "train.save_every=2",
                         "--overwrite")) == 0
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]


def test_a_live_writer_refuses_a_second_train(tmp_path, problems_file, capsys):
    out = tmp_path / "run"
    with run_dir.lock_output(out, "expo-rl train other"):
        assert main(sft_args(out, problems_file)) == 2
    err = capsys.readouterr().err
    assert "is in use by pid" in err and "expo-rl train other" in err
    assert not (out / "metrics.jsonl").exists()


HOLDER = textwrap.dedent("""
    import sys, time
    from expo_rl.engine.run_dir import lock_output
    lock = lock_output(sys.argv[1], "holder")
    print("locked", flush=True)
    time.sleep(60)
""")


def test_lock_is_held_across_processes_and_freed_when_the_holder_dies(tmp_path):
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=f"in use by pid {child.pid}"):
            run_dir.lock_output(out, "second")
    finally:
        child.kill()
        child.wait()
    # the holder died without cleaning up: its lock file (with its pid) is stale and taken over
    assert json.loads((out / run_dir.LOCK_NAME).read_text())["pid"] == child.pid
    with run_dir.lock_output(out, "third"):
        assert json.loads((out / run_dir.LOCK_NAME).read_text())["command"] == "third"


def test_eval_explain_and_diagnose_refuse_a_busy_output(tmp_path, problems_file, capsys):
    out = tmp_path / "eval"
    with run_dir.lock_output(out, "expo-rl eval other"):
        assert main(["eval", "--model", "tiny:qwen2", "--data", str(problems_file), "--n", "1",
                     "--k", "1", "--out", str(out)]) == 2
    assert "in use by pid" in capsys.readouterr().err
    cache = tmp_path / "expl.jsonl"
    with run_dir.lock_output(tmp_path, "x", lock_file=f"{cache}.lock"):
        assert main(["explain", "--model", "tiny:qwen2", "--data", str(problems_file),
                     "--out", str(cache)]) == 2
    assert "in use by pid" in capsys.readouterr().err
    diag = tmp_path / "diag"
    with run_dir.lock_output(diag, "x"):
        assert main(["diagnose", "--model", "tiny:qwen2", "--data", str(problems_file),
                     "--out", str(diag)]) == 2
    assert "in use by pid" in capsys.readouterr().err


def test_unwritable_checkpoints_fail_before_training(tmp_path, problems_file, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").write_text("not a directory")  # mkdir fails, as it does without permission
    assert main(sft_args(out, problems_file)) == 2
    assert "checkpoints cannot be written" in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()  # no step ran


def test_too_little_disk_for_one_checkpoint_is_refused(tmp_path, monkeypatch):
    class Usage:
        free = 10 * 2**20

    monkeypatch.setattr(run_dir.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(RunDirError, match="one checkpoint needs about"):
        run_dir.check_can_save(tmp_path / "checkpoints", num_params=10_000_000, param_bytes=4)
    run_dir.check_can_save(tmp_path / "checkpoints", num_params=100_000, param_bytes=4)
