"""Held-out evaluation of a training run (``eval.*``): pass@k per level during and after training.

Every ``eval.every`` steps (and before step 1) the current policy samples ``eval.n`` completions
for the first ``eval.limit`` held-out questions of each level; the unbiased pass@k estimator
(SPEC section 4, ``expo_rl.eval.pass_at_k``) is logged as ``eval/L<level>/pass@<k>``. After the
last step, with ``eval.final_n > 0``, every held-out question gets ``final_n`` samples and the
table is written to ``<output_dir>/eval_final.json`` (and logged as ``eval_final/...``), so a
run's result is a file any report can read back.

The held-out set is the task's (``data.task_held_out`` questions per level, never in the training
pool) or ``eval.data``. Prompts and reward are the run's: a task's own texts and verifier, or the
zero-shot prompt and the math verifier. Sampling uses a fixed seed (``eval.seed``, by default
``7777 * train.seed``), so two checkpoints, or two methods, are compared on the same draws.
Every process evaluates (under FSDP / ZeRO-3 generation is collective); the main one writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expo_rl.data.records import Problem
from expo_rl.engine.config import RunConfig
from expo_rl.engine.recipe import ProblemSet, resolve_reward
from expo_rl.engine.rollouts import stop_ids
from expo_rl.eval import evaluate
from expo_rl.verify import correctness_reward

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

FINAL_FILE = "eval_final.json"
INITIAL_FILE = "eval_initial.json"  # eval.initial: the same table before step 1
ByLevel = dict[str, dict[str, float]]  # level -> "pass@k" -> value


def eval_seed(config: RunConfig) -> int:
    return config.eval.seed if config.eval.seed is not None else 7_777 * config.train.seed


def eval_reward(problem_set: ProblemSet) -> Callable[..., float]:
    """The task's verifier for task runs, else the math verifier's 0/1 correctness."""
    return resolve_reward("task", problem_set) if problem_set.task is not None else correctness_reward


def held_out_pass_at_k(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: RunConfig,
                       problem_set: ProblemSet, prompt: Callable[[Problem], str], *, n: int,
                       ks: list[int], limit: int | None, progress: bool = False, rollout: Any = None) -> ByLevel:
    """``{level: {"pass@k": value}}`` over the first ``limit`` held-out questions of each level.

    ``rollout``: the run's rollout engine (``sampling.engine: vllm``); it samples the evaluation
    too when the evaluation temperature is the training one (the engine's), else the built-in loop."""
    problems = [p for _, level in sorted(problem_set.held_out.items()) for p in level[:limit]]
    if not problems:
        return {}
    was_training = model.training
    model.eval()
    s = config.sampling
    temperature = config.eval.temperature or s.temperature
    sampler = None
    if rollout is not None and temperature == s.temperature:
        def sampler(prompts: list[str], *, n: int, seed: int) -> Any:
            return rollout.sample(model, prompts, n=n, seed=seed)
    try:
        result = evaluate(model, tokenizer, problems, n=n, ks=ks,
                          temperature=temperature, top_p=s.top_p, sampler=sampler,
                          stop_ids=stop_ids(config, tokenizer),
                          max_new_tokens=s.max_new_tokens, seed=eval_seed(config),
                          batch_size=s.batch_size, draw=s.draw, reward_fn=eval_reward(problem_set),
                          prompt=prompt, show_progress=progress)
    finally:
        model.train(was_training)
    return {level: {f"pass@{k}": value for k, value in row.items()} for level, row in result.by_level.items()}


def as_metrics(prefix: str, table: ByLevel) -> dict[str, float]:
    """``{prefix}/L<level>/pass@<k>`` entries for the metrics log."""
    return {f"{prefix}/L{level}/{key}": value for level, row in table.items() for key, value in row.items()}


def write_final(output_dir: Path, table: ByLevel, *, step: int, n: int, ks: list[int],
                questions: dict[str, int], name: str = FINAL_FILE) -> Path:
    path = output_dir / name
    path.write_text(json.dumps({"step": step, "n": n, "ks": ks, "questions_per_level": questions,
                                "by_level": table}, indent=2) + "\n")
    return path


def read_final(output_dir: Path) -> dict[str, Any]:
    """The ``eval_final.json`` of a finished run."""
    return json.loads((Path(output_dir) / FINAL_FILE).read_text())
