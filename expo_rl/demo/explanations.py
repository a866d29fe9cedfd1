"""Self-explanations for the demo task: ``c~ ~ pi(. | q, a*)`` (SPEC 3.2, ExPO eq. 7).

The policy is prompted with the task's hinted prompt (question plus answer), and each accepted
explanation becomes a positive sample ``(q, c~, a*)`` **under the plain prompt q**. An
explanation is accepted when its final answer is right (``task.verify``) or, with
``strict=True``, when every step of it is right (``task.check_trace``). The feasibility study
saw why strictness matters for explanations regenerated from a policy under training: keeping
explanations whose answer is right lets wrong intermediate steps in, training on them erodes
the model's ability to explain (hinted accuracy 0.89 -> 0.46 in 60 steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.rollouts import sample_rows
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.sources import Row


@dataclass
class ExplanationSet:
    """Accepted explanations by problem id (rows under the plain prompt), and how many passed."""

    rows: dict[str, Row] = field(default_factory=dict)
    asked: int = 0
    hinted_correct: float = 0.0   # fraction of all hinted samples whose answer is right
    hinted_strict: float = 0.0    # fraction of all hinted samples right in every step

    @property
    def coverage(self) -> float:
        """Fraction of the asked problems that got an accepted explanation."""
        return len(self.rows) / self.asked if self.asked else 0.0


def self_explanations(model: Any, tokenizer: Any, task: DemoTask, problems: list[Problem], *,
                      tries: int, temperature: float, seed: int, strict: bool = False) -> ExplanationSet:
    """One accepted explanation per problem where any of ``tries`` hinted samples passes."""
    result = ExplanationSet(asked=len(problems))
    if not problems:
        return result
    rows = sample_rows(model, tokenizer, task, problems, n=tries, temperature=temperature,
                       seed=seed, hinted=True)
    by_id = {p.id: p for p in problems}
    correct = strict_ok = 0
    for row in rows:
        problem = by_id[row.problem_id]
        ok = row.reward == 1.0 and row.finished
        whole = ok and task.check_trace(problem, row.completion)
        correct += ok
        strict_ok += whole
        if (whole if strict else ok) and row.problem_id not in result.rows:
            result.rows[row.problem_id] = Row(
                prompt_ids=row.prompt_ids, completion_ids=row.completion_ids,
                problem_id=row.problem_id, reference=row.reference, completion=row.completion,
                reward=1.0, fields=row.fields)
    result.hinted_correct = correct / len(rows)
    result.hinted_strict = strict_ok / len(rows)
    return result
