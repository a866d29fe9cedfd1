"""ExPO diagnostics on the demo task (SPEC 3.3): why self-explanations make good positives.

For held-out hard questions, three kinds of completion are scored **under the plain prompt q**
with the library's scorer (``expo_rl.expo.scoring.score_segments``):

* ``self_explanation``: ``c~ ~ pi(. | q, a*)`` from the base model, accepted ones only;
* ``expert``: the task's expert solution ``c_E`` (another style);
* ``own``: ``c ~ pi(. | q)``, the model's own samples (right or wrong).

Reported per kind: per-token NLL of the whole completion (Figure 2 of the paper: in-
distribution means low NLL) and the answer reachability ``pi(a* | q, c)``: the probability of
the gold final-answer text right after the chain of thought ``c`` (Lemma 2).
"""

from __future__ import annotations

import math
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.explanations import self_explanations
from expo_rl.demo.rollouts import sample_rows
from expo_rl.demo.tasks.base import DemoTask

KINDS = ("self_explanation", "expert", "own")


def diagnose(model: Any, tokenizer: Any, task: DemoTask, problems: list[Problem], *,
             temperature: float, seed: int, tries: int = 4) -> dict[str, Any]:
    """Per kind: ``nll`` (list of per-token NLLs), ``reachability`` (list), and their means."""
    from expo_rl.expo.scoring import score_segments

    by_id = {p.id: p for p in problems}
    explanations = self_explanations(model, tokenizer, task, problems, tries=tries,
                                     temperature=temperature, seed=seed)
    own = sample_rows(model, tokenizer, task, problems, n=1, temperature=temperature, seed=seed + 1)
    texts: dict[str, list[tuple[Problem, str]]] = {
        "self_explanation": [(by_id[pid], row.completion) for pid, row in explanations.rows.items()],
        "expert": [(p, p.solution) for p in problems],
        "own": [(by_id[row.problem_id], row.completion) for row in own],
    }
    out: dict[str, Any] = {"hinted_correct": explanations.hinted_correct,
                           "explanation_coverage": explanations.coverage, "questions": len(problems)}
    for kind, items in texts.items():
        items = [(p, t) for p, t in items if t.strip()]
        scores = score_segments(model, tokenizer, [task.prompt(p) for p, _ in items],
                                [[t] for _, t in items], batch_size=64)
        nll = [s[0].nll_per_token for s in scores if s[0].n_tokens]
        reach = reachability(model, tokenizer, task, items, score_segments)
        out[kind] = {"nll": nll, "reachability": reach, "n": len(items),
                     "mean_nll": _mean(nll), "mean_reachability": _mean(reach)}
    return out


def reachability(model: Any, tokenizer: Any, task: DemoTask, items: list[tuple[Problem, str]],
                 score_segments: Any) -> list[float]:
    """``pi(a* | q, c)`` for each (problem, completion) whose answer part the task can split."""
    prompts, segments = [], []
    for problem, text in items:
        split, gold = task.split_answer(text), task.answer_text(problem)
        if split is None or gold is None:
            continue
        prompts.append(task.prompt(problem))
        segments.append([split[0], gold])
    if not prompts:
        return []
    scores = score_segments(model, tokenizer, prompts, segments, batch_size=64)
    return [math.exp(s[1].logprob) for s in scores]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
