"""One error path for every command: expected errors (config, data, setup) exit 2 with one line
and no traceback; an unexpected error keeps its traceback."""

import pytest
from adversarial_helpers import sft_args

from expo_rl import cli
from expo_rl.cli import main


@pytest.mark.parametrize("argv", [
    ["train", "sft", "--set", "data.name=/no/such/file.jsonl"],
    ["train", "sft", "--set", "model.policy=/no/such/model"],
    ["train", "sft", "--set", "model.policy=tiny:nope"],
    ["train", "/no/such/config.yaml"],
    ["explain", "--model", "tiny:qwen2", "--data", "/no/such/file.jsonl"],
    ["explain", "--model", "/no/such/model", "--data", "{data}"],
    ["diagnose", "--model", "tiny:qwen2", "--data", "/no/such/file.jsonl"],
    ["diagnose", "--model", "tiny:qwen2", "--data", "{data}", "--template", "/no/such/template.yaml"],
    ["eval", "--model", "/no/such/model", "--data", "{data}", "--n", "1", "--k", "1"],
    ["eval", "--model", "tiny:qwen2", "--data", "/no/such/file.jsonl"],
])
def test_expected_errors_are_one_line_with_exit_2(argv, tmp_path, problems_file, capsys):
    argv = [a.replace("{data}", str(problems_file)) for a in argv]
    if argv[0] == "train":
        argv += ["--set", f"train.output_dir={tmp_path / 'run'}", "--set", "train.progress=false"]
    else:
        argv += ["--out", str(tmp_path / ("out.jsonl" if argv[0] == "explain" else "out"))]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert "error" in last and ("/no/such" in last or "nope" in last)


def test_unexpected_errors_keep_their_traceback(tmp_path, problems_file, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr("expo_rl.engine.runtime.setup", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(sft_args(tmp_path / "run", problems_file))


def test_one_line_flattens_multi_line_messages():
    assert cli.one_line(ValueError("a\n  b")) == "a b"
    assert cli.one_line(FileNotFoundError(2, "No such file or directory", "/x")) == "/x: No such file or directory"
