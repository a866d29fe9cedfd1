"""Caches keyed by what produced them: changed data (same ids), model or sampling settings
regenerate instead of reusing, and append-only files survive a torn last line (issue 16,
worst case 3)."""

import json

from adversarial_helpers import QUESTIONS, write_problems

from expo_rl.cli import main
from expo_rl.data.appendlog import append_records, repair_tail
from expo_rl.data.jsonl import read_json_lines
from expo_rl.data.records import Problem
from expo_rl.engine.cache_context import cache_context
from expo_rl.engine.config import load_config
from expo_rl.expo.bank import ExplanationBank
from expo_rl.expo.explanations import (
    ExplainConfig,
    Explanation,
    append_explanations,
    read_explanations,
)
from expo_rl.policy.sampling import SampleBatch
from expo_rl.sources import SourceEnv
from expo_rl.sources.cache_key import problem_keys
from expo_rl.sources.frozen import sample_once


def _records(path):
    """The JSON objects of an append-only file, a torn line skipped with a warning."""
    return [record for _, record in read_json_lines(path, missing_ok=True, bad="warn")]


def _env(tmp_path, calls, context):
    def sample(policy, prompts, *, n, seed):
        calls.append(len(prompts))
        index = [i for i in range(len(prompts)) for _ in range(n)]
        return SampleBatch(index, [[1, 2] for _ in index], [[3] for _ in index],
                           [f"sample {len(calls)}" for _ in index], [True for _ in index])

    def score(rows):
        for row in rows:
            row.reward = 0.0

    return SourceEnv(name="t", tokenizer=None, prompt=lambda q: q, sample=sample, frozen_policy=lambda: None,
                     score=score, gather=list, cache_dir=str(tmp_path), show_progress=False,
                     cache_context=context)


def _problems(suffix=""):
    return [Problem(id=pid, question=q + suffix, answer=a) for pid, q, a in QUESTIONS]


def test_frozen_samples_are_reused_only_under_the_same_key(tmp_path, capsys):
    calls = []
    path = tmp_path / "t.jsonl"
    first = sample_once(_problems(), 2, _env(tmp_path, calls, {"model": "a"}), path)
    assert calls == [4]
    again = sample_once(_problems(), 2, _env(tmp_path, calls, {"model": "a"}), path)
    assert calls == [4] and [r.completion for g in again for r in g] == [r.completion for g in first for r in g]
    # same ids, new questions: regenerated, never reused
    changed = sample_once(_problems(" Explain."), 2, _env(tmp_path, calls, {"model": "a"}), path)
    assert calls == [4, 4] and all(r.completion == "sample 2" for g in changed for r in g)
    assert "cache key differs" in capsys.readouterr().err
    # another model (or temperature, or task): regenerated
    sample_once(_problems(), 2, _env(tmp_path, calls, {"model": "b"}), path)
    assert calls == [4, 4, 4]


def test_cache_context_names_model_sampling_and_task(tmp_path):
    base = load_config("rft")
    key = cache_context(base, base.terms[0])
    for override in ("sampling.temperature=0.5", "model.policy=tiny:llama", "sampling.max_new_tokens=7",
                     "data.instruction=Answer.", "terms.0.reward=correctness_strict", "train.seed=3"):
        other = load_config("rft", [override])
        assert cache_context(other, other.terms[0]) != key, override
    for override in ("terms.0.source_args.rows_per_step=2", "train.steps=9", "sampling.batch_size=2"):
        other = load_config("rft", [override])
        assert cache_context(other, other.terms[0]) == key, override


def test_rft_run_resamples_after_the_data_file_changes(tmp_path, capsys):
    data = write_problems(tmp_path / "p.jsonl")
    out = tmp_path / "run"
    args = ["train", "rft", "--set", f"train.output_dir={out}", "--set", f"data.name={data}",
            "--set", "train.steps=1", "--set", "train.progress=false", "--set", "train.tensorboard=false",
            "--set", "sampling.max_new_tokens=4", "--set", "train.log_entropy=false"]
    cache = out / "cache" / "rft.jsonl"
    assert main(args) == 0
    first = _records(cache)
    assert len(first) == 8
    assert main([*args, "--overwrite"]) == 0
    assert len(_records(cache)) == 8  # unchanged settings: reused
    write_problems(data, suffix=" Think.")  # same ids, new questions
    assert main([*args, "--overwrite"]) == 0
    records = _records(cache)
    assert len(records) == 16 and len({r["cache_key"] for r in records}) == 8
    assert "cache key differs" in capsys.readouterr().err


def _explanation(pid, key):
    return Explanation(id=pid, sample_index=0, answer="2", hint_source="answer", hint="2", raw="r",
                       finished=True, text="t", status="accepted", extracted_answer="2", hint_mentions=0,
                       positive="t \\boxed{2}", policy={"cache_key": key})


def test_explanation_bank_ignores_records_of_other_settings(tmp_path, capsys):
    problems = _problems()
    keys = problem_keys({"model": "a"}, problems)
    cache = tmp_path / "e.jsonl"
    append_explanations(cache, [_explanation("p0", keys["p0"]), _explanation("p1", "other")])
    bank = ExplanationBank(ExplainConfig(), 1, 0, generate=None, cache=cache, keys=keys)
    assert bank.load_cache() == 1 and set(bank.entries) == {"p0"}
    assert "1 cached explanations were produced by another" in capsys.readouterr().err


def test_torn_last_line_is_skipped_and_the_next_append_starts_clean(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    append_records(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as handle:
        handle.write('{"a": 3, "tru')  # killed mid-write
    assert _records(path) == [{"a": 1}, {"a": 2}]
    assert "c.jsonl:3: invalid JSON" in capsys.readouterr().err
    append_records(path, [{"a": 4}])
    assert _records(path) == [{"a": 1}, {"a": 2}, {"a": 4}]
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert repair_tail(path) == 0


def test_explanation_cache_with_a_torn_line_still_loads(tmp_path):
    path = tmp_path / "e.jsonl"
    append_explanations(path, [_explanation("p0", "k")])
    with open(path, "a") as handle:
        handle.write('{"id": "p1", "sampl')
    assert [e.id for e in read_explanations(path)] == ["p0"]
    append_explanations(path, [_explanation("p2", "k")])
    assert [e.id for e in read_explanations(path)] == ["p0", "p2"]


def test_explain_resumes_only_records_of_the_same_settings(tmp_path, problems_file, capsys):
    out = tmp_path / "expl.jsonl"
    args = ["explain", "--model", "tiny:qwen2", "--data", str(problems_file), "--limit", "2",
            "--max-new-tokens", "4", "--out", str(out)]
    assert main(args) == 0
    assert "2 to explain" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 to explain" in capsys.readouterr().out  # same settings: resumed, nothing redone
    assert main([*args, "--temperature", "0.5"]) == 0  # other settings: not counted as done
    captured = capsys.readouterr()
    assert "2 to explain" in captured.out and "cache key differs" in captured.err
    assert len(read_explanations(out)) == 4
