"""Pilot measurements that chose the real-LM task (issue 13; docs/notes/issue13-real-lm.md).

Gemma 3 270M (base model, 4-bit GGUF from PyPI) sampled with vLLM on candidate task families,
16 questions per level, 8 samples each (T from $T, default 1.0), 64 new tokens, stopped at the end
of the line; pass@1 / pass@8 per level. Prompt formats tried: multiplication 3-shot, addition
3-shot, addition 8-shot (the chosen one, now ``expo_rl.tasks.addition``), addition with a
column-addition chain of thought 4-shot. Run in the vLLM venv:

    T=0.7 HF_HUB_OFFLINE=1 .venv-vllm/bin/python scripts/real_lm_pilot.py add8

(``mul3`` was measured at T = 1.0, the others at T = 0.7.) A pilot, not the experiment: the
experiment's base table is the GRPO run's ``eval_initial.json`` (32 questions per level).
"""

from __future__ import annotations

import os
import random
import re
import sys
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

SHOTS = {
    "mul3": [("7 * 8", "7 * 8 = 56. The answer is 56."),
             ("43 * 6", "43 * 6 = 40 * 6 + 3 * 6 = 240 + 18 = 258. The answer is 258."),
             ("25 * 17", "25 * 17 = 25 * 10 + 25 * 7 = 250 + 175 = 425. The answer is 425.")],
    "add3": [("3 + 5", "3 + 5 = 8. The answer is 8."), ("47 + 8", "47 + 8 = 55. The answer is 55."),
             ("26 + 38", "26 + 38 = 64. The answer is 64.")],
    "add8": [(f"{a} + {b}", f"{a} + {b} = {a + b}. The answer is {a + b}.")
             for a, b in ((3, 5), (47, 8), (26, 38), (6, 7), (152, 41), (2, 4), (19, 5), (71, 16))],
    "addcot4": [("3 + 5", "3 + 5 = 8. The answer is 8."),
                ("47 + 8", "Ones: 7 + 8 = 15, write 5 carry 1. Tens: 4 + 1 = 5. The answer is 55."),
                ("26 + 38", "Ones: 6 + 8 = 14, write 4 carry 1. Tens: 2 + 3 + 1 = 6. The answer is 64."),
                ("152 + 41", "Ones: 2 + 1 = 3, write 3. Tens: 5 + 4 = 9, write 9. Hundreds: 1. The answer is 193.")],
}
DIGITS = {"mul": {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2), 5: (3, 2)},
          "add": {1: (1, 1), 2: (2, 1), 3: (2, 2), 4: (3, 2), 5: (3, 3)}}
STOP_IDS = [1, 106, 107, 108]  # Gemma's <eos>, <end_of_turn>, "\n", "\n\n"


def main() -> None:
    from vllm import LLM, SamplingParams

    from expo_rl.policy.loading import (  # the converted gemma3-270m folder
        convert_gguf,
        gemma3_270m_gguf,
    )

    fmt = sys.argv[1]
    op = "*" if fmt.startswith("mul") else "+"
    digits = DIGITS["mul" if op == "*" else "add"]
    few = "".join(f"Q: What is {q}?\nA: {a}\n\n" for q, a in SHOTS[fmt])
    llm = LLM(model=str(convert_gguf(gemma3_270m_gguf())), dtype="bfloat16", enforce_eager=True,
              max_model_len=1024, seed=0)
    rng = random.Random(1)
    prompts, answers, levels = [], [], []
    for level, (da, db) in digits.items():
        for _ in range(16):
            a = rng.randint(10 ** (da - 1) if da > 1 else (2 if op == "*" else 1), 10 ** da - 1)
            b = rng.randint(10 ** (db - 1) if db > 1 else (2 if op == "*" else 1), 10 ** db - 1)
            prompts.append(few + f"Q: What is {a} {op} {b}?\nA:")
            answers.append(a * b if op == "*" else a + b)
            levels.append(level)
    params = SamplingParams(n=8, temperature=float(os.environ.get("T", "1.0")), max_tokens=64,
                            stop_token_ids=STOP_IDS)
    started = time.time()
    outputs = llm.generate(prompts, params)
    table: dict[int, list[int]] = {}
    for level, answer, output in zip(levels, answers, outputs):
        right = [re.findall(r"answer is (-?\d+)", c.text) == [str(answer)] for c in output.outputs]
        row = table.setdefault(level, [0, 0, 0])
        row[0] += sum(right)
        row[1] += any(right)
        row[2] += 1
    for level, (right, solved, questions) in sorted(table.items()):
        print(f"level {level}: pass@1 {right / (8 * questions):.3f} pass@8 {solved / questions:.3f}")
    print(f"{time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
