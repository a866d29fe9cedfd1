"""Divergence: a non-finite update stops the run (or is skipped) and never reaches a checkpoint;
pruning keeps the newest finite checkpoint (issue 16, worst case 1)."""

import json
import math

import pytest
import torch
from adversarial_helpers import sft_args
from safetensors.torch import load_file

from expo_rl.cli import main
from expo_rl.engine import checkpoint
from expo_rl.engine.guards import update_is_finite
from expo_rl.engine.metrics import read_metrics


def _all_finite(ckpt):
    tensors = load_file(str(next((ckpt / "policy").glob("*.safetensors"))))
    return all(bool(torch.isfinite(t).all()) for t in tensors.values())


def test_diverging_sft_stops_with_a_clear_error_and_keeps_finite_checkpoints(tmp_path, problems_file, capsys):
    out = tmp_path / "run"
    code = main(sft_args(out, problems_file, "--set", "optim.lr=1e6", "--set", "train.steps=4",
                         "--set", "train.save_every=1"))
    err = capsys.readouterr().err
    assert code == 3
    assert "training diverged at step" in err and "train.on_nonfinite=skip" in err
    assert "Traceback" not in err
    saved = checkpoint.list_checkpoints(out / "checkpoints")
    assert all(_all_finite(path) for _, path in saved)
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["optim/skipped_updates"] == 1
    assert rows[-1]["step"] not in [step for step, _ in saved]  # the diverged step saved nothing


def test_skip_mode_drops_nonfinite_updates_and_saves_only_finite_steps(tmp_path, problems_file):
    out = tmp_path / "run"
    code = main(sft_args(out, problems_file, "--set", "optim.lr=1e6", "--set", "train.steps=3",
                         "--set", "train.save_every=1", "--set", "train.keep_last=0",
                         "--set", "train.on_nonfinite=skip"))
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    skipped = {r["step"] for r in rows if r["optim/skipped_updates"]}
    assert skipped, "lr=1e6 must produce a non-finite update"
    saved = checkpoint.list_checkpoints(out / "checkpoints")
    assert {step for step, _ in saved}.isdisjoint(skipped)
    assert all(_all_finite(path) for _, path in saved)
    assert all({"verify/calls", "verify/timeouts", "verify/gold_parse_failures"} <= set(r) for r in rows)


def _fake_checkpoint(root, step, finite):
    path = root / checkpoint.checkpoint_name(step)
    path.mkdir(parents=True)
    (path / checkpoint.STATE_FILE).write_text(json.dumps({"step": step, "finite": finite}))
    (path / checkpoint.MARKER).write_text("")
    return path


def test_pruning_never_deletes_the_last_finite_checkpoint(tmp_path):
    _fake_checkpoint(tmp_path, 1, True)
    _fake_checkpoint(tmp_path, 2, True)
    for step in (3, 4, 5):
        _fake_checkpoint(tmp_path, step, False)
    checkpoint._prune(tmp_path, keep_last=2)
    assert [s for s, _ in checkpoint.list_checkpoints(tmp_path)] == [2, 4, 5]
    assert checkpoint.find_latest_finite_checkpoint(tmp_path).name == "step-000002"


class _OneProcess:
    num_processes = 1


@pytest.mark.parametrize(("losses", "norm", "finite"), [
    ([1.0, 2.0], 3.0, True), ([1.0], math.nan, False), ([math.inf], 1.0, False),
    ([1.0, math.nan], 1.0, False), ([1.0], math.inf, False),
])
def test_update_is_finite(losses, norm, finite):
    assert update_is_finite(_OneProcess(), losses, norm) is finite
