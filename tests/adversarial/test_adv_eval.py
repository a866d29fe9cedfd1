"""Evaluation under abuse: verifier statistics report gold-answer parse failures, a large --n is
split over generate calls, over-long prompts are warned about and counted (or skipped)."""

import json

import pytest
from adversarial_helpers import QUESTIONS, write_problems

import expo_rl.policy
from expo_rl.cli import main
from expo_rl.data.records import Problem
from expo_rl.engine.prompt_limits import screen_overlong
from expo_rl.engine.typed_config import ConfigError
from expo_rl.eval import evaluate
from expo_rl.eval.evaluation import AUTO_BATCH_ROWS
from expo_rl.policy import build_prompt, load_policy
from expo_rl.policy.sampling import SampleBatch
from expo_rl.verify import clear_cache


def _boxed_sampler(calls):
    def sample(model, tokenizer, prompts, *, n, batch_size=None, **kwargs):
        calls.append((len(prompts) * n, batch_size))
        index = [i for i in range(len(prompts)) for _ in range(n)]
        return SampleBatch(index, [[1] for _ in index], [[2, 3] for _ in index],
                           ["so \\boxed{1}" for _ in index], [True for _ in index])

    return sample


@pytest.fixture
def tiny():
    return load_policy("tiny:qwen2")


def test_eval_summary_counts_unparsable_gold_answers(tmp_path, monkeypatch, capsys):
    clear_cache()
    data = write_problems(tmp_path / "bad_gold.jsonl",
                          [(f"g{i}", f"Question {i}?", "\\frac{{{{") for i in range(3)])
    monkeypatch.setattr(expo_rl.policy, "sample", _boxed_sampler([]))
    out = tmp_path / "eval"
    assert main(["eval", "--model", "tiny:qwen2", "--data", str(data), "--n", "2", "--k", "1",
                 "--out", str(out), "--no-progress"]) == 0
    summary = capsys.readouterr().out
    assert "6 unparsed gold answers" in summary, summary
    assert "0 completions without an answer" in summary
    report = json.loads((out / "eval.json").read_text())
    assert report["verifier"]["gold_parse_failures"] == 6  # cached verdicts count too


def test_large_n_is_split_over_generate_calls(tiny, monkeypatch):
    calls = []
    monkeypatch.setattr(expo_rl.policy, "sample", _boxed_sampler(calls))
    model, tokenizer = tiny
    problems = [Problem(id=pid, question=q, answer=a) for pid, q, a in QUESTIONS[:2]]
    result = evaluate(model, tokenizer, problems, n=20000, ks=[1], show_progress=False,
                      reward_fn=lambda completion, reference, **fields: 0.0)
    assert result.n_samples == 20000 and len(calls) == len(problems)
    # one problem per call, its 20000 rows generated 256 at a time (one batch of 160000 before)
    assert all(batch == AUTO_BATCH_ROWS for _, batch in calls)


def test_small_n_keeps_eight_problems_per_call(tiny, monkeypatch):
    calls = []
    monkeypatch.setattr(expo_rl.policy, "sample", _boxed_sampler(calls))
    model, tokenizer = tiny
    problems = [Problem(id=f"p{i}", question="q", answer="1") for i in range(10)]
    evaluate(model, tokenizer, problems, n=4, ks=[1], show_progress=False)
    assert calls == [(32, 32), (8, 32)]


def test_overlong_prompts_are_counted_and_skipped_on_request(tiny, tmp_path, monkeypatch, capsys):
    model, tokenizer = tiny
    long_q = "word " * 5000  # > 4096 positions of the tiny model
    problems = [Problem(id="short", question="What is 1+1?", answer="2"),
                Problem(id="long", question=long_q, answer="2")]
    kept = screen_overlong(problems, model=model, tokenizer=tokenizer, prompt=lambda p: build_prompt(tokenizer, p.question),
                           max_new_tokens=16, on_overlong="warn")
    assert kept == problems
    assert "1 of 2 prompts do not fit the model's context" in capsys.readouterr().err
    kept = screen_overlong(problems, model=model, tokenizer=tokenizer, prompt=lambda p: build_prompt(tokenizer, p.question),
                           max_new_tokens=16, on_overlong="skip")
    assert [p.id for p in kept] == ["short"]
    with pytest.raises(ConfigError, match="data.on_overlong"):
        screen_overlong(problems[1:], model=model, tokenizer=tokenizer, prompt=lambda p: build_prompt(tokenizer, p.question),
                        max_new_tokens=16, on_overlong="skip")

    data = write_problems(tmp_path / "long.jsonl", [("short", "What is 1+1?", "2"), ("long", long_q, "2")])
    monkeypatch.setattr(expo_rl.policy, "sample", _boxed_sampler([]))
    out = tmp_path / "eval"
    assert main(["eval", "--model", "tiny:qwen2", "--data", str(data), "--n", "1", "--k", "1",
                 "--max-new-tokens", "16", "--skip-overlong", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["n_problems"] == 1 and report["data"]["overlong_prompts"] == 1
