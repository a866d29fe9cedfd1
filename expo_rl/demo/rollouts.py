"""Sampling for the demo through the library's policy layer (``expo_rl.policy.sample``).

The demo's prompts are the task's own texts (no chat template, no instruction: the tiny model
was pretrained on exactly these), so ``sample`` receives them as they are. Completions come back
as :class:`~expo_rl.sources.Row` objects scored with the task's strict verifier, ready for the
shared training step.
"""

from __future__ import annotations

from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.sources import Row


def sample_rows(model: Any, tokenizer: Any, task: DemoTask, problems: list[Problem], *, n: int,
                temperature: float, seed: int, hinted: bool = False,
                batch_size: int | None = 512) -> list[Row]:
    """``n`` scored completions per problem (prompt-major; ``group`` = problem index).

    ``hinted=True`` samples under the self-explanation prompt ``(q, a*)`` but the rows carry the
    PLAIN prompt's ids: a self-explanation is trained and scored under ``q`` (SPEC 3.2).
    """
    from expo_rl.policy import sample

    if not problems:
        return []
    prompts = [task.hinted_prompt(p) if hinted else task.prompt(p) for p in problems]
    batch = sample(model, tokenizer, prompts, n=n, temperature=temperature, seed=seed,
                   max_new_tokens=task.max_new_tokens, batch_size=batch_size)
    plain_ids = [encode(tokenizer, task.prompt(p)) for p in problems] if hinted else None
    rows = []
    for j, index in enumerate(batch.prompt_index):
        problem = problems[index]
        text = batch.texts[j]
        rows.append(Row(
            prompt_ids=plain_ids[index] if hinted else list(batch.prompt_ids[j]),
            completion_ids=list(batch.completion_ids[j]), problem_id=problem.id,
            reference=problem.answer, completion=text, reward=task.reward(problem, text),
            group=index, finished=bool(batch.finished[j]), fields={"level": problem.level},
        ))
    return rows


def encode(tokenizer: Any, text: str, *, eos: bool = False) -> list[int]:
    """Token ids of a task text (no special tokens), optionally followed by EOS."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id] if eos else ids


def text_row(tokenizer: Any, task: DemoTask, problem: Problem, completion: str, *,
             group: int = -1, pair: int = -1, pair_sign: int = 0,
             reward: float | None = None) -> Row:
    """A fixed (plain prompt, completion + EOS) row, e.g. an expert solution for SFT."""
    return Row(prompt_ids=encode(tokenizer, task.prompt(problem)),
               completion_ids=encode(tokenizer, completion, eos=True), problem_id=problem.id,
               reference=problem.answer, completion=completion,
               reward=task.reward(problem, completion) if reward is None else reward,
               group=group, pair=pair, pair_sign=pair_sign, fields={"level": problem.level})


def as_plain_row(row: Row, **changes: Any) -> Row:
    """A copy of ``row`` with some fields replaced (rows are reused across terms)."""
    from dataclasses import replace

    return replace(row, **changes)
