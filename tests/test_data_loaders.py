"""Loaders on the real data the package carries, data-folder resolution, field maps and Hugging Face datasets."""

import gzip
import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

import expo_rl
from expo_rl.data import (
    BUILTIN,
    DATA_ENV,
    DataError,
    LoadResult,
    Problem,
    load_problems,
    loaders,
    paths,
    resolve_data_dir,
)
from expo_rl.data.hf import parse_hf_spec
from expo_rl.data.paths import PACKAGED_DATA_DIR, packaged_checksums


def test_math500_matches_the_documented_counts():
    result = load_problems("math500")
    assert len(result) == 500 and result.skipped == 0
    # data README: 43/90/105/128/134 problems at levels 1-5
    assert Counter(p.level for p in result) == {1: 43, 2: 90, 3: 105, 4: 128, 5: 134}
    first = result.problems[0]
    assert first.id == "test/precalculus/807.json"
    assert first.answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert "\\boxed" in first.solution and first.subject == "Precalculus"
    assert first.source == "math500"


def test_math_train_keeps_the_two_null_level_rows():
    result = load_problems("math_train")
    assert len(result) == 7607 and result.skipped == 0
    unknown = [p for p in result if p.level is None]
    assert sorted(p.id for p in unknown) == ["train-extra/2003", "train-extra/2253"]
    assert Counter(p.level for p in result if p.level is not None) == {
        1: 623, 2: 1411, 3: 1648, 4: 1764, 5: 2159}


def test_gsm8k_answer_after_hashes_and_solution_before():
    test = load_problems("gsm8k")
    assert len(test) == 1319 and test.source.endswith(("test.jsonl", "test.jsonl.gz"))
    janet = test.problems[0]
    assert janet.answer == "18" and janet.id == "gsm8k_test/0"
    assert janet.solution.startswith("Janet sells 16 - 3 - 4 = 9 duck eggs")
    assert "<<" not in janet.solution and "####" not in janet.solution
    assert janet.extra["raw_answer"].endswith("#### 18")
    assert len(load_problems("gsm8k_train")) == 7473
    assert load_problems("gsm8k", "train").problems[0].id == "gsm8k_train/0"
    # every GSM8K answer is a plain number after separator removal
    assert all(p.answer.lstrip("-").replace(".", "", 1).isdigit() for p in test)


def test_split_argument_and_conflicts():
    assert load_problems("math", "train", limit=1).problems[0].source == "math_train"
    assert load_problems("math500", "test", limit=1).problems[0].source == "math500"
    with pytest.raises(DataError, match="'math500' is the test split; split='train' conflicts"):
        load_problems("math500", "train")
    with pytest.raises(DataError, match="split 'dev' not available; allowed: test, train"):
        load_problems("gsm8k", "dev")


def test_unknown_name_lists_the_choices():
    with pytest.raises(DataError, match=r"unknown data 'math5000': use one of .*gsm8k_test.*math500"):
        load_problems("math5000")


def test_filters_levels_subjects_shuffle_limit():
    level5 = load_problems("math500", levels=5)
    assert len(level5) == 134 and level5.filtered_out == 366
    algebra = load_problems("math500", subjects=["algebra", "GEOMETRY"])
    assert {p.subject for p in algebra} == {"Algebra", "Geometry"} and len(algebra) == 124 + 41
    a = load_problems("math500", shuffle_seed=7, limit=10)
    b = load_problems("math500", shuffle_seed=7, limit=10)
    c = load_problems("math500", shuffle_seed=8, limit=10)
    assert [p.id for p in a] == [p.id for p in b] != [p.id for p in c]
    assert [p.id for p in load_problems("math500", limit=3)] == [
        p.id for p in load_problems("math500").problems[:3]]
    with pytest.raises(DataError, match="limit=-1"):
        load_problems("math500", limit=-1)


def test_data_dir_argument_env_then_the_packaged_copy(tmp_path, monkeypatch):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text(
        json.dumps({"question": "What is 2+3?", "answer": "2+3=5\n#### 5"}) + "\n")
    only = load_problems("gsm8k", data_dir=tmp_path)
    assert [(p.question, p.answer) for p in only] == [("What is 2+3?", "5")]
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert resolve_data_dir() == tmp_path and len(load_problems("gsm8k")) == 1
    # a set the user's folder lacks comes from the packaged copy
    assert len(load_problems("math500", data_dir=tmp_path)) == 500
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nope"))
    with pytest.raises(DataError, match=r"from \$EXPO_RL_DATA\) does not exist"):
        load_problems("gsm8k")
    monkeypatch.delenv(DATA_ENV)
    # the default: the gzip copy inside the package, nothing outside the repository
    default = resolve_data_dir()
    assert default == PACKAGED_DATA_DIR and default.is_relative_to(Path(expo_rl.__file__).parent)
    assert (default / "math" / "math500.jsonl.gz").is_file()
    with pytest.raises(DataError, match="data_dir argument / --data-dir"):
        resolve_data_dir(tmp_path / "missing")


def test_packaged_copy_matches_its_checksums_and_licences():
    sums = packaged_checksums()
    assert sorted(sums) == sorted(relative for relative, _, _ in BUILTIN.values())
    for relative, digest in sums.items():
        path = PACKAGED_DATA_DIR / f"{relative}.gz"
        with gzip.open(path, "rb") as handle:
            assert hashlib.sha256(handle.read()).hexdigest() == digest
        assert "MIT License" in (path.parent / "LICENSE").read_text()
    sizes = {name: len(load_problems(name)) for name in BUILTIN}
    assert sizes == {"math500": 500, "math_train": 7607, "gsm8k_test": 1319, "gsm8k_train": 7473}


def test_corrupt_packaged_copy_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "math" / "math500.jsonl.gz"
    bad.parent.mkdir()
    with gzip.open(bad, "wb") as handle:
        handle.write(b'{"problem": "x"}\n')
    (tmp_path / "SHA256SUMS").write_text((PACKAGED_DATA_DIR / "SHA256SUMS").read_text())
    monkeypatch.setattr(paths, "PACKAGED_DATA_DIR", tmp_path)
    monkeypatch.setattr(paths, "CHECKSUMS", tmp_path / "SHA256SUMS")
    with pytest.raises(DataError, match="math500.jsonl.gz is corrupt: sha256"):
        load_problems("math500")


def test_missing_everywhere_falls_back_to_the_hub_or_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "PACKAGED_DATA_DIR", tmp_path)
    with pytest.raises(DataError, match="math/train.jsonl is neither in the data folder"):
        load_problems("math_train")
    # math500 has a hub copy in the same shape: it is read through `datasets` (stubbed: no network)
    asked = []

    def fake_read_hf(spec, split, fields, *, on_error):
        asked.append((spec, fields.question))
        return LoadResult(problems=[Problem("a", "1+1?", "2", source="hf")], source="hf")

    monkeypatch.setattr(loaders, "read_hf", fake_read_hf)
    result = load_problems("math500")
    assert asked == [("HuggingFaceH4/MATH-500:test", "problem")]
    assert [p.source for p in result] == ["math500"]


def test_generic_jsonl_with_field_map(tmp_path):
    path = tmp_path / "custom.jsonl"
    rows = [{"uid": 7, "prompt": "2*3?", "target": 6, "difficulty": 2, "tag": "x"},
            {"uid": 8, "prompt": "2*4?", "target": "8", "difficulty": None, "tag": "y"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields = {"id": "uid", "question": "prompt", "answer": "target", "level": "difficulty"}
    result = load_problems(str(path), fields=fields)
    assert result.problems[0] == Problem(id="7", question="2*3?", answer="6", level=2,
                                         source="custom")
    assert result.problems[0].extra == {"tag": "x"} and result.problems[1].level is None
    with pytest.raises(DataError, match=r"custom.jsonl:1: required field 'question' \(question\)"):
        load_problems(str(path))  # the generic names do not fit this file
    with pytest.raises(DataError, match=r"field map keys \['prompt'\] are not Problem fields"):
        load_problems(str(path), fields={"prompt": "prompt"})
    with pytest.raises(DataError, match="schema='csv': allowed values are math, gsm8k, generic"):
        load_problems(str(path), schema="csv")


def test_jsonl_path_is_schema_detected_and_found_under_the_data_dir():
    math = load_problems("math/math500.jsonl", limit=2)  # relative to the data folder
    assert math.problems[0].id == "test/precalculus/807.json" and math.problems[0].level == 2
    gsm = load_problems(str(resolve_data_dir() / "gsm8k" / "test.jsonl.gz"), limit=1)
    assert gsm.problems[0].answer == "18" and gsm.problems[0].id == "test/0"
    with pytest.raises(DataError, match="data file 'nowhere/x.jsonl' does not exist"):
        load_problems("nowhere/x.jsonl")
    with pytest.raises(DataError, match="is a single file; split='train'"):
        load_problems("math/math500.jsonl", "train")


def test_parse_hf_spec(tmp_path):
    assert parse_hf_spec("HuggingFaceH4/MATH-500:test") == ("HuggingFaceH4/MATH-500", None, "test", False)
    assert parse_hf_spec("openai/gsm8k:main:test") == ("openai/gsm8k", "main", "test", False)
    assert parse_hf_spec("openai/gsm8k") == ("openai/gsm8k", None, None, False)
    assert parse_hf_spec(f"{tmp_path}:train") == (str(tmp_path), None, "train", True)


@pytest.fixture(scope="module")
def saved_dataset(tmp_path_factory):
    from datasets import Dataset, DatasetDict

    with gzip.open(resolve_data_dir() / "math" / "math500.jsonl.gz", "rt", encoding="utf-8") as handle:
        math_rows = [json.loads(next(handle)) for _ in range(4)]
    folder = tmp_path_factory.mktemp("hf") / "mini_math"
    DatasetDict({"test": Dataset.from_list(math_rows[:3]),
                 "train": Dataset.from_list(math_rows[3:])}).save_to_disk(str(folder))
    return folder, math_rows


def test_hf_load_from_disk_and_split_choice(saved_dataset):
    folder, rows = saved_dataset
    test = load_problems(f"hf:{folder}")  # 'test' is the default split
    assert [p.id for p in test] == [r["unique_id"] for r in rows[:3]]
    assert test.problems[0].answer == rows[0]["answer"] and test.problems[0].level == rows[0]["level"]
    assert test.problems[0].source == "hf:mini_math:test"
    train = load_problems(f"hf:{folder}:train")
    assert [p.id for p in train] == [rows[3]["unique_id"]]
    assert load_problems(f"hf:{folder}", "train").problems == train.problems
    with pytest.raises(DataError, match="no split 'dev'; available: test, train"):
        load_problems(f"hf:{folder}:dev")


def test_hf_local_json_file_with_bad_row(tmp_path):
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "r\n#### 3"}) + "\n"
                    + json.dumps({"question": "q2", "answer": "no marker"}) + "\n")
    with pytest.raises(DataError, match=r"hf:.*gsm.jsonl \[train\] row 2: field 'answer' \(answer\): "
                                        "no '#### <answer>' marker"):
        load_problems(f"hf:{path}", schema="gsm8k")
    result = load_problems(f"hf:{path}", schema="gsm8k", on_error="skip")
    assert [p.answer for p in result] == ["3"] and result.skipped == 1


@pytest.mark.skipif(os.environ.get("HF_HUB_OFFLINE", "0") == "0", reason="checks the offline message")
def test_hf_hub_id_offline_is_a_clear_error():
    with pytest.raises(DataError, match=r"could not load hf:HuggingFaceH4/MATH-500 .*HF_HUB_OFFLINE"):
        load_problems("hf:HuggingFaceH4/MATH-500:test")

