"""The one JSONL reader: values with line numbers, errors naming file:line, torn lines skipped
where asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from expo_rl.data import DataError
from expo_rl.data.jsonl import read_json_lines


def test_values_with_line_numbers_and_errors_naming_the_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n[2]\n{"torn": \n')
    with pytest.raises(DataError, match=rf"^{path}:4: invalid JSON"):
        read_json_lines(path)
    assert read_json_lines(path, bad="skip") == [(1, {"a": 1}), (3, [2])]
    assert read_json_lines(path, bad="warn") == [(1, {"a": 1}), (3, [2])]
    assert f"{path}:4: invalid JSON" in capsys.readouterr().err
    assert read_json_lines(tmp_path / "missing.jsonl", missing_ok=True) == []
    with pytest.raises(FileNotFoundError):
        read_json_lines(tmp_path / "missing.jsonl")
