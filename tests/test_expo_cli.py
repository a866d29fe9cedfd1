"""``expo-rl explain`` and ``expo-rl diagnose`` end to end on ``tiny:qwen2`` and the real data."""

from __future__ import annotations

import json
import math

from expo_rl.cli import main
from expo_rl.expo.explanations import read_explanations

KINDS = ("self_explanation", "own_sample", "expert")


def test_explain_writes_versioned_records_and_resumes(tmp_path, capsys):
    out = tmp_path / "explanations.jsonl"
    args = ["explain", "--model", "tiny:qwen2", "--data", "gsm8k_train", "--limit", "2", "--n", "2",
            "--max-new-tokens", "8", "--on-mismatch", "repair", "--out", str(out)]
    assert main(args) == 0
    rows = read_explanations(out)
    assert len(rows) == 4 and {r.id for r in rows} == {rows[0].id, rows[-1].id}
    for row in rows:
        assert row.hint == f"The correct final answer is {row.answer}."
        assert row.policy["model"] == "tiny:qwen2" and len(row.policy["hash"]) == 16
        # a random tiny model never states the answer: repaired, and the positive ends with a*
        assert row.status in {"repaired", "accepted"}
        assert row.positive.endswith(f"\\boxed{{{row.answer}}}$.")
    capsys.readouterr()
    assert main(args + ["--limit", "3"]) == 0  # resumes: only the third question is new
    assert "2 already in" in capsys.readouterr().out
    assert len(read_explanations(out)) == 6


def test_diagnose_writes_the_documented_json(tmp_path):
    out = tmp_path / "diag"
    assert main(["diagnose", "--model", "tiny:qwen2", "--data", "math_train", "--levels", "1,2",
                 "--limit", "2", "--n", "2", "--max-new-tokens", "8", "--out", str(out)]) == 0
    report = json.loads((out / "diagnose.json").read_text())
    for key in ("nll_per_token", "reachability"):
        assert set(KINDS) <= set(report[key])
        for kind in KINDS:
            entry = report[key][kind]
            assert set(entry) == {"mean", "std", "n"}
    assert report["nll_per_token"]["self_explanation"]["n"] == 4  # 2 questions x 2 samples
    assert report["nll_per_token"]["expert"]["n"] == 2
    # a random model over a 2048-token vocabulary: NLL near log(2048) = 7.6, reachability tiny
    assert 5.0 < report["nll_per_token"]["own_sample"]["mean"] < 10.0
    assert 0.0 < report["reachability"]["own_sample"]["mean"] < 1e-3
    assert len(report["records"]) == 2
    record = report["records"][0]
    assert record["level"] in (1, 2) and len(record["self_explanation"]) == 2
    sample = record["own_sample"][0]
    assert math.isclose(sample["reachability"], math.exp(sample["log_reachability"]))
    assert (out / "nll_per_token.png").stat().st_size > 0
    assert (out / "log_reachability.png").stat().st_size > 0
