"""Conversational data (issue 14): rows with ``messages`` (TRL's format) load with their answer,
render through the chat template with a per-data-set system prompt, and train end to end."""

import json

import pytest

from expo_rl.cli import main
from expo_rl.data import DataError, load_problems
from expo_rl.data.records import Problem
from expo_rl.engine.config import load_config
from expo_rl.engine.metrics import read_metrics
from expo_rl.engine.recipe import prompt_function
from expo_rl.policy import load_tiny_tokenizer, messages_prompt
from expo_rl.policy.prompts import PLAIN_TEMPLATE

ROWS = [
    {"messages": [{"role": "system", "content": "You are a careful calculator."},
                  {"role": "user", "content": "What is 2 + 3? Put the answer in \\boxed{}."}],
     "answer": "5"},
    {"messages": [{"role": "user", "content": "What is 7 - 4?"}], "answer": 3},
    {"prompt": [{"role": "user", "content": "Half of 10?"}], "answer": "5", "id": "half"},
    {"messages": [{"role": "user", "content": "What is 3 * 3?"},
                  {"role": "assistant", "content": "\\boxed{9}"}], "answer": "9"},
]


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:2] + ROWS[3:]))
    return path


def test_messages_rows_load_with_answer_and_turns(chat_file, tmp_path):
    problems = load_problems(str(chat_file)).problems
    assert [p.question for p in problems] == ["What is 2 + 3? Put the answer in \\boxed{}.",
                                              "What is 7 - 4?", "What is 3 * 3?"]
    assert [p.answer for p in problems] == ["5", "3", "9"]
    assert problems[0].extra["messages"][0] == {"role": "system", "content": "You are a careful calculator."}
    assert problems[2].extra["messages"] == [{"role": "user", "content": "What is 3 * 3?"}]  # reply dropped
    prompt_only = tmp_path / "prompt.jsonl"
    prompt_only.write_text(json.dumps(ROWS[2]) + "\n")
    (half,) = load_problems(str(prompt_only)).problems
    assert half.id == "half" and half.extra["messages"][-1]["content"] == "Half of 10?"


def test_bad_conversations_name_the_line_and_turn(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "ok?"}], "answer": "1"}) + "\n"
                    + json.dumps({"messages": [{"role": "robot", "content": "x"}], "answer": "1"}) + "\n"
                    + json.dumps({"messages": [{"role": "system", "content": "x"}], "answer": "1"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2.*turn 0: role 'robot' is not allowed"):
        load_problems(str(path))
    result = load_problems(str(path), on_error="skip")
    assert len(result) == 1 and result.skipped == 2
    assert "must end with a non-empty user turn" in result.skip_reasons[1]


def test_chat_template_and_system_prompt(chat_file):
    tokenizer = load_tiny_tokenizer()
    problems = load_problems(str(chat_file)).problems
    prompt = prompt_function(load_config("grpo", ["data.system_prompt=Be brief."]), tokenizer, None)
    own_system = prompt(problems[0])
    assert own_system == ("<|im_start|>system\nYou are a careful calculator.<|im_end|>\n<|im_start|>user\n"
                          "What is 2 + 3? Put the answer in \\boxed{}.<|im_end|>\n<|im_start|>assistant\n")
    assert prompt(problems[1]).startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                                                   "What is 7 - 4?<|im_end|>")
    # plain questions get the system prompt too, and the default instruction
    plain = prompt(Problem(id="p", question="What is 1 + 1?", answer="2"))
    assert plain.startswith("<|im_start|>system\nBe brief.") and "\\boxed{}" in plain
    # a tokenizer without a chat template: the turns' texts in the plain template
    tokenizer.chat_template = None
    assert messages_prompt(tokenizer, problems[1].extra["messages"], system="Be brief.") == \
        PLAIN_TEMPLATE.format(text="Be brief.\n\nWhat is 7 - 4?")


def test_messages_jsonl_trains_grpo_end_to_end(chat_file, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "grpo", "--set", f"data.name={chat_file}", "--set", "data.system_prompt=Be brief.",
                 "--set", "terms.0.reward=correctness", "--set", f"train.output_dir={out}",
                 "--set", "train.progress=false", "--set", "train.tensorboard=false"]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all("grpo/reward_mean" in r for r in rows)
