"""The object-level API: ``expo_rl.train(model=..., tokenizer=..., problems=..., terms=...)`` with
objects built in Python, and the YAML path is the same call (same metrics for the same run)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import expo_rl
from expo_rl import Problem, Term, load_policy, train
from expo_rl.data import load_problems
from expo_rl.engine.config import load_config
from expo_rl.engine.metrics import read_metrics, without_timings
from expo_rl.engine.runtime import train as train_from_config
from expo_rl.engine.typed_config import ConfigError

SETTINGS = {"sampling": {"temperature": 1.0, "max_new_tokens": 8},
            "optim": {"lr": 1e-3}, "train": {"steps": 2, "progress": False, "tensorboard": False}}
PROBLEMS = [Problem(id=f"p{i}", question=f"What is {i} + {i}?", answer=str(2 * i), level=1 + i % 2)
            for i in range(4)]


def length_reward(completion: str, reference: str, **fields) -> float:
    """A reward that differs within a group, so GRPO has a gradient."""
    return len(completion) / 100


def _config(out: Path) -> dict:
    return {**SETTINGS, "train": {**SETTINGS["train"], "output_dir": str(out)}}


def test_train_with_python_objects_and_a_reward_function(tmp_path: Path) -> None:
    calls = []

    def reward(completion: str, reference: str, **fields) -> float:
        calls.append((reference, fields["id"], fields["level"]))
        return fields["level"] * len(completion) / 100  # outputs of one group differ: a gradient

    model, tokenizer = load_policy("tiny:qwen2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train(model=model, tokenizer=tokenizer, problems=PROBLEMS,
                    terms=[Term(source="on_policy", coefficient="grpo", reward=reward,
                                source_args={"questions_per_step": 2, "group_size": 2})],
                    config={**_config(tmp_path), "eval": {"every": 2, "n": 2, "k": [1]}}, held_out=PROBLEMS[:2])

    rows = read_metrics(summary["metrics"])
    assert [row["step"] for row in rows] == [0, 1, 2]  # step 0: the held-out evaluation before training
    assert "eval/L1/pass@1" in rows[0] and "eval/L1/pass@1" in rows[2]
    by_id = {p.id: p for p in PROBLEMS}
    assert len(calls) == 2 * 2 * 2 and all(ref == by_id[i].answer and lv == by_id[i].level for ref, i, lv in calls)
    assert all(row["grpo/reward_mean"] >= 0 and row["grpo/rows"] == 4 for row in rows[1:])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model was not trained"
    saved = json.loads(next((tmp_path / "checkpoints").glob("*/trainer_state.json")).read_text())["config"]
    assert saved["terms"][0]["reward"].endswith("test_train_with_python_objects_and_a_reward_function.<locals>.reward")
    assert saved["model"]["policy"].startswith("object:")


def test_the_yaml_path_is_the_same_call(tmp_path: Path) -> None:
    """``expo-rl train``'s path (config -> load_parts -> runtime.train) and ``expo_rl.train`` with
    the same objects give the same metrics, step by step."""
    data = tmp_path / "problems.jsonl"
    data.write_text("".join(json.dumps({"id": p.id, "question": p.question, "answer": p.answer}) + "\n"
                            for p in PROBLEMS))
    config = load_config("grpo", [f"data.name={data}", "data.limit=null", "train.progress=false",
                                  "train.tensorboard=false", f"train.output_dir={tmp_path / 'yaml'}",
                                  f"terms.0.reward={__name__}:length_reward"])
    from_yaml = read_metrics(train_from_config(config)["metrics"])

    model, tokenizer = load_policy(config.model.policy)
    api_config = dataclasses.replace(config, train=dataclasses.replace(config.train, output_dir=str(tmp_path / "api")))
    from_api = read_metrics(train(model=model, tokenizer=tokenizer, problems=load_problems(str(data)).problems,
                                  config=api_config)["metrics"])
    assert len(from_yaml) == config.train.steps
    assert from_yaml[-1]["optim/grad_norm"] > 0
    for api_row, yaml_row in zip(from_api, from_yaml, strict=True):
        assert without_timings(api_row) == pytest.approx(without_timings(yaml_row))


def test_bad_input_names_the_key() -> None:
    model, tokenizer = load_policy("tiny:qwen2")
    with pytest.raises(ConfigError, match="terms.0.coefficient.*'grp' is not allowed"):
        train(model=model, tokenizer=tokenizer, problems=PROBLEMS, terms=[{"source": "on_policy", "coefficient": "grp"}])
    with pytest.raises(ConfigError, match="terms.0.reward.*expected str | Callable"):
        train(model=model, tokenizer=tokenizer, problems=PROBLEMS,
              terms=[Term(source="on_policy", coefficient="grpo", reward=3)])
    with pytest.raises(ConfigError, match="at least one Problem"):
        train(model=model, tokenizer=tokenizer, problems=[], terms=[Term(source="on_policy", coefficient="grpo")])
    assert expo_rl.train is train
