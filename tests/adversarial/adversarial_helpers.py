"""Helpers of the adversarial suite: a local problem file and a tiny SFT command line."""

import json

QUESTIONS = [("p0", "What is 1 + 1?", "2"), ("p1", "What is 2 + 3?", "5"),
             ("p2", "What is 4 * 2?", "8"), ("p3", "What is 9 - 3?", "6")]


def write_problems(path, questions=QUESTIONS, *, suffix=""):
    with open(path, "w") as handle:
        for pid, question, answer in questions:
            handle.write(json.dumps({"id": pid, "question": question + suffix, "answer": answer,
                                     "solution": f"The result is {answer}. \\boxed{{{answer}}}"}) + "\n")
    return path


def sft_args(out, data, *extra):
    """``expo-rl train sft`` on ``data`` into ``out``: 1 step, tiny model, quiet."""
    return ["train", "sft", "--set", f"train.output_dir={out}", "--set", f"data.name={data}",
            "--set", "data.levels=null", "--set", "data.limit=4", "--set", "train.steps=1",
            "--set", "train.progress=false", "--set", "train.tensorboard=false",
            "--set", "train.log_entropy=false", *extra]
