"""Issue 14: train.report_to (tensorboard, wandb offline, trackio local) and learning curves
(`expo-rl plot RUN_DIR`, and `expo-rl train` drawing them at the end)."""

import importlib.util
import json
import sys

import pytest

from expo_rl.cli import main
from expo_rl.engine.config import load_config
from expo_rl.engine.curves import plot_metrics, series
from expo_rl.engine.typed_config import ConfigError

FAST = ["--set", "train.steps=1", "--set", "train.progress=false", "--set", "sampling.draw=inverse_cdf"]


def _train(out, *overrides):
    assert main(["train", "grpo", "--set", f"train.output_dir={out}", *FAST, *overrides]) == 0


def test_report_to_is_validated_and_tensorboard_key_still_works(tmp_path):
    with pytest.raises(ConfigError, match=r"train.report_to.0': 'mlflow' is not allowed; allowed values: "
                                          r"tensorboard, trackio, wandb"):
        load_config("grpo", ["train.report_to=[mlflow]"])
    out = tmp_path / "tb"
    _train(out, "--set", "train.report_to=[tensorboard]", "--set", "train.tensorboard=false",
           "--set", "train.plot=false")
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))  # report_to wins
    assert not (out / "plots").exists()
    out = tmp_path / "none"
    _train(out, "--set", "train.tensorboard=false", "--set", "train.plot=false")
    assert not (out / "tensorboard").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None,
                    reason="wandb is not installed (optional extra: pip install 'expo-rl[wandb]')")
def test_wandb_offline_writes_its_run_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "wb"
    _train(out, "--set", "train.report_to=[wandb]", "--set", "train.plot=false")
    (run,) = (out / "wandb").glob("offline-run-*")
    assert list(run.glob("run-*.wandb"))  # the binary log `wandb sync` uploads


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None,
                    reason="trackio is not installed (optional extra: pip install 'expo-rl[trackio]')")
def test_trackio_local_writes_its_database(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))
    if "trackio" in sys.modules:  # trackio reads $TRACKIO_DIR once, at import
        pytest.skip("trackio was imported before this test set TRACKIO_DIR")
    out = tmp_path / "tk"
    _train(out, "--set", "train.report_to=[trackio]", "--set", "train.project=expo-rl-test",
           "--set", "train.plot=false")
    import sqlite3

    db = tmp_path / "trackio" / "expo-rl-test.db"
    assert db.is_file()
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
        assert "metrics" in tables
        logged = con.execute("select metrics from metrics").fetchall()
    texts = [r[0] if isinstance(r[0], str) else bytes(r[0]).decode("utf-8", "replace") for r in logged]
    assert any("grpo/objective" in text for text in texts)


def test_train_draws_curves_and_plot_redraws_them(tmp_path, capsys):
    out = tmp_path / "run"
    _train(out, "--set", "train.steps=2", "--set", "train.tensorboard=false")
    pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert {"grpo.png", "optim.png", "time.png"} <= set(pngs)
    assert (out / "plots" / "grpo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(out), "--out", str(tmp_path / "again")]) == 0
    assert sorted(p.name for p in (tmp_path / "again").glob("*.png")) == pngs
    assert main(["plot", str(tmp_path / "nowhere")]) == 2
    assert "no metrics file" in capsys.readouterr().err


def test_series_skips_nulls_and_booleans(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"step": 1, "a/x": 1.0, "a/flag": True, "b": None},
        {"step": 2, "a/x": None, "b": 3},
        {"step": 3, "a/x": 2.5}]) + "\n")
    assert series([json.loads(line) for line in path.read_text().splitlines()]) == {
        "a/x": [(1, 1.0), (3, 2.5)], "b": [(2, 3.0)]}
    assert [p.name for p in plot_metrics(path, tmp_path / "p")] == ["a.png", "other.png"]
