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
from typing import TYPE_CHECKING, Any

from expo_rl.data.records import Problem
from expo_rl.expo.scoring import score_segments
from expo_rl.expo.task_explanations import task_explanation_generator
from expo_rl.policy import sample
from expo_rl.tasks import DemoTask

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

KINDS = ("self_explanation", "expert", "own")


def diagnose(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: DemoTask,
             problems: list[Problem], *, temperature: float, seed: int, tries: int = 4,
             batch_size: int | None = None, stop_ids: tuple[int, ...] = ()) -> dict[str, Any]:
    """Per kind: ``nll`` (list of per-token NLLs), ``reachability`` (list), and their means.
    ``stop_ids``: extra stop tokens of the sampler (``sampling.stop``, e.g. one-line answers)."""
    def sampler(policy: Any, prompts: list[str], *, n: int, seed: int) -> Any:
        return sample(policy, tokenizer, prompts, n=n, temperature=temperature, seed=seed,
                      max_new_tokens=task.max_new_tokens, batch_size=batch_size, stop_ids=stop_ids)

    by_id = {p.id: p for p in problems}
    explanations = task_explanation_generator(task, sampler, per_question=tries)(model, problems, seed)
    first: dict[str, str] = {}
    for e in explanations:
        if e.usable:
            first.setdefault(e.id, e.positive)
    own = sampler(model, [task.prompt(p) for p in problems], n=1, seed=seed + 1)
    texts: dict[str, list[tuple[Problem, str]]] = {
        "self_explanation": [(by_id[pid], text) for pid, text in first.items()],
        "expert": [(p, task.expert_solution(p)) for p in problems],
        "own": [(problems[i], text) for i, text in zip(own.prompt_index, own.texts)],
    }
    out: dict[str, Any] = {"hinted_correct": sum(e.usable for e in explanations) / max(1, len(explanations)),
                           "explanation_coverage": len(first) / max(1, len(problems)),
                           "questions": len(problems)}
    for kind, items in texts.items():
        items = [(p, t) for p, t in items if t.strip()]
        scores = score_segments(model, tokenizer, [task.prompt(p) for p, _ in items],
                                [[t] for _, t in items], batch_size=64)
        nll = [s[0].nll_per_token for s in scores if s[0].n_tokens]
        reach = reachability(model, tokenizer, task, items)
        out[kind] = {"nll": nll, "reachability": reach, "n": len(items),
                     "mean_nll": _mean(nll), "mean_reachability": _mean(reach)}
    return out


def reachability(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, task: DemoTask,
                 items: list[tuple[Problem, str]]) -> list[float]:
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
