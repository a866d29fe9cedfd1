"""Self-explanations on a task plugin: ``c~ ~ pi(. | q, a*)`` judged by the task (SPEC 3.2, ExPO eq. 7).

A task (:class:`expo_rl.tasks.DemoTask`) writes its own hinted prompt (question plus the answer
as a hint) and checks outputs itself, so nothing here depends on math answer formats: an
explanation is the hinted sample as it is (it already ends with the answer in the task's
format), trained under the task's plain prompt ``q``. It is usable when it stopped at EOS and

* ``accept="answer"``: the task's outcome check ``task.verify`` passes (the paper: the
  explanation's final answer is right), or
* ``accept="trace"``: the task's whole-trace check ``task.check_trace`` passes (every step
  right; beyond the paper: regenerated explanations from a policy under training let wrong
  intermediate steps in otherwise, measured in docs/notes/issue6-demo.md).

The records are the same :class:`~expo_rl.expo.explanations.Explanation` the math path writes,
so the explanation bank, its cache and its acceptance statistics (``explain/*``) serve both.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from expo_rl.data.records import Problem
from expo_rl.expo.explanations import Explanation

if TYPE_CHECKING:
    from expo_rl.policy.sampling import SampleBatch
    from expo_rl.tasks import DemoTask

TaskAccept = Literal["answer", "trace"]
TASK_ACCEPT = ("answer", "trace")
TASK_HINT = "answer"  # a task's hinted prompt gives the answer a* (the paper's hint)


def judge_task_explanation(task: DemoTask, problem: Problem, raw: str, finished: bool,
                           accept: TaskAccept) -> str:
    """Status of one hinted sample: ``accepted``, ``unfinished`` (length cap), ``mismatch``
    (wrong answer) or ``wrong_step`` (right answer, a wrong step, with ``accept="trace"``)."""
    if accept not in TASK_ACCEPT:
        raise ValueError(f"task explanations: accept={accept!r}; allowed values: {', '.join(TASK_ACCEPT)}")
    if not finished:
        return "unfinished"
    if not task.verify(problem, raw):
        return "mismatch"
    if accept == "trace" and not task.check_trace(problem, raw):
        return "wrong_step"
    return "accepted"


def task_explanation_generator(task: DemoTask, sampler: Callable[..., SampleBatch], *, per_question: int,
                               accept: TaskAccept = "answer", questions_per_call: int = 512,
                               ) -> Callable[[Any, Sequence[Problem], int], list[Explanation]]:
    """``generate(model, problems, seed)`` for an :class:`~expo_rl.expo.bank.ExplanationBank`:
    ``per_question`` hinted samples per problem from ``sampler(model, prompts, n=, seed=)``."""

    def generate(model: Any, problems: Sequence[Problem], seed: int) -> list[Explanation]:
        out: list[Explanation] = []
        for call, start in enumerate(range(0, len(problems), questions_per_call)):
            chunk = list(problems[start:start + questions_per_call])
            batch = sampler(model, [task.hinted_prompt(p) for p in chunk], n=per_question, seed=seed + call)
            seen: Counter[int] = Counter()
            for row, index in enumerate(batch.prompt_index):
                problem, raw = chunk[index], batch.texts[row]
                finished = bool(batch.finished[row])
                status = judge_task_explanation(task, problem, raw, finished, accept)
                out.append(Explanation(
                    id=problem.id, sample_index=seen[index], answer=problem.answer, hint_source=TASK_HINT,
                    hint=problem.answer, raw=raw, finished=finished, text=raw, status=status,
                    extracted_answer=None, hint_mentions=0,
                    positive=raw if status == "accepted" else None))
                seen[index] += 1
        return out

    return generate
