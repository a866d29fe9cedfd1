"""``evaluate``: sample n completions per problem, score them, report pass@k (SPEC section 4).

Protocol (paper, appendix C.1): the zero-shot prompt of the policy layer (think step by step,
final answer in ``\\boxed{}``), n samples per question at the given temperature, answers checked
by the math verifier, unbiased pass@k from the n samples. A sample counts as correct when its
reward exceeds 0.5 (the built-in correctness rewards are 0/1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tqdm.auto import tqdm

from expo_rl.data.records import Problem, problem_fields
from expo_rl.eval.passk import mean_accuracy
from expo_rl.eval.tables import ProblemScore, by_level, by_subject, format_table, pass_at_k_row
from expo_rl.verify import batch_rewards, correctness_reward, extract_answer, verifier_stats
from expo_rl.verify.stats import VerifierStats

CORRECT_ABOVE = 0.5
# Sequences per generate call when the caller gives no batch size: 8 problems x n, but never more
# than this, so a large n is split over calls instead of asking for one huge allocation.
AUTO_BATCH_ROWS = 256


@dataclass
class SampleRecord:
    """One scored completion (written to ``samples.jsonl`` by the CLI)."""

    problem_id: str
    sample: int
    text: str
    answer: str | None
    reward: float
    correct: bool
    finished: bool
    n_tokens: int


@dataclass
class EvalResult:
    """Everything one evaluation measured; ``to_json()`` is what ``eval.json`` holds.

    ``n_samples`` is samples per problem (``n``); ``pass_at_k`` maps k -> mean pass@k;
    ``by_level``/``by_subject`` map group -> k -> value; ``per_problem`` has each problem's
    correct count; ``truncated`` is the fraction of completions that hit ``max_new_tokens``.
    """

    n_problems: int
    n_samples: int
    ks: list[int]
    pass_at_k: dict[int, float]
    accuracy: float
    by_level: dict[str, dict[int, float]]
    by_subject: dict[str, dict[int, float]]
    per_problem: list[ProblemScore]
    truncated: float
    mean_completion_tokens: float
    verifier: dict[str, float]
    wall_time_s: float
    settings: dict[str, Any] = field(default_factory=dict)
    samples: list[SampleRecord] = field(default_factory=list, repr=False)

    def table(self, group: str = "level") -> str:
        """The printable pass@k table by ``group`` ("level" or "subject")."""
        return format_table(self.per_problem, self.ks, group=group)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (k keys become strings)."""
        return {
            "n_problems": self.n_problems,
            "n_samples": self.n_samples,
            "n_completions": self.n_problems * self.n_samples,
            "ks": self.ks,
            "pass_at_k": {str(k): v for k, v in self.pass_at_k.items()},
            "accuracy": self.accuracy,
            "by_level": _stringify(self.by_level),
            "by_subject": _stringify(self.by_subject),
            "problems_per_level": _counts(self.per_problem, "level"),
            "per_problem": [asdict(s) for s in self.per_problem],
            "truncated": self.truncated,
            "mean_completion_tokens": self.mean_completion_tokens,
            "verifier": self.verifier,
            "wall_time_s": self.wall_time_s,
            "settings": self.settings,
        }


def _stringify(table: dict[str, dict[int, float]]) -> dict[str, dict[str, float]]:
    return {group: {str(k): v for k, v in row.items()} for group, row in table.items()}


def _counts(scores: Sequence[ProblemScore], attribute: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for score in scores:
        value = getattr(score, attribute)
        name = str(value) if value is not None else "unknown"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _check_ks(n: int, ks: Sequence[int]) -> list[int]:
    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1:
        raise ValueError(f"ks={ks}: every k must be a positive integer")
    if ks[-1] > n:
        raise ValueError(f"pass@{ks[-1]} needs n >= {ks[-1]} samples per problem, got n={n}")
    return ks


def evaluate(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    *,
    n: int,
    ks: Sequence[int],
    temperature: float = 0.7,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    seed: int = 0,
    batch_size: int | None = None,
    draw: str = "multinomial",
    reward_fn: Callable[..., float] = correctness_reward,
    prompt: Callable[[Problem], str] | None = None,
    show_progress: bool = True,
    keep_samples: bool = False,
    on_chunk: Callable[[list[SampleRecord]], None] | None = None,
    stop_ids: Sequence[int] = (),
    sampler: Callable[..., Any] | None = None,
) -> EvalResult:
    """Sample ``n`` completions per problem with ``model``, score with ``reward_fn``, tabulate.

    ``batch_size`` is the number of sequences per ``generate`` call (default: 8 problems' worth,
    at most ``AUTO_BATCH_ROWS``);
    problems are processed in chunks of ``max(1, batch_size // n)``, each with the seed
    ``seed + index of its first problem`` so a chunk's samples do not depend on earlier chunks.
    ``on_chunk`` receives each finished chunk's scored samples (the CLI streams them to disk,
    so a long run that is stopped still leaves its figures so far). ``prompt(problem)`` replaces
    the zero-shot prompt (e.g. a task's own text). ``stop_ids``: extra stop tokens
    (``expo_rl.policy.stop_token_ids``). ``sampler(prompts, n=, seed=)``: another sampler of the
    same distribution (e.g. the run's vLLM engine, ``expo_rl.rollout``) instead of the built-in
    loop; the sampling arguments above then belong to it.
    """
    # transformers via policy: `from expo_rl.eval import pass_at_k` stays light
    from expo_rl.policy import build_prompt, sample

    if not problems:
        raise ValueError("evaluate: no problems to evaluate")
    if n < 1:
        raise ValueError(f"evaluate: n={n} must be >= 1")
    ks = _check_ks(n, ks)
    rows_per_call = batch_size or min(8 * n, AUTO_BATCH_ROWS)
    per_chunk = max(1, rows_per_call // n)
    start = time.perf_counter()
    stats_before = verifier_stats.snapshot()
    correct = [0] * len(problems)
    samples: list[SampleRecord] = []
    finished = tokens = no_answer = 0
    progress = _progress(len(problems), show_progress)
    for first in range(0, len(problems), per_chunk):
        chunk = problems[first:first + per_chunk]
        prompts = [prompt(p) if prompt is not None else build_prompt(tokenizer, p.question) for p in chunk]
        if sampler is not None:
            batch = sampler(prompts, n=n, seed=seed + first)
        else:
            batch = sample(model, tokenizer, prompts,
                           n=n, temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                           seed=seed + first, batch_size=rows_per_call, draw=draw, stop_ids=stop_ids)
        owners = [chunk[i] for i in batch.prompt_index]
        rewards = batch_rewards(reward_fn, batch.texts, [p.answer for p in owners],
                                [problem_fields(p) for p in owners])
        seen: dict[int, int] = {}
        records: list[SampleRecord] = []
        for j, (problem, reward) in enumerate(zip(owners, rewards)):
            index = first + batch.prompt_index[j]
            is_correct = reward > CORRECT_ABOVE
            correct[index] += int(is_correct)
            finished += int(batch.finished[j])
            tokens += len(batch.completion_ids[j])
            answer = extract_answer(batch.texts[j])
            no_answer += answer is None
            if keep_samples or on_chunk is not None:
                seen[index] = seen.get(index, -1) + 1
                records.append(SampleRecord(problem.id, seen[index], batch.texts[j],
                                            answer, float(reward),
                                            is_correct, bool(batch.finished[j]),
                                            len(batch.completion_ids[j])))
        if keep_samples:
            samples.extend(records)
        if on_chunk is not None:
            on_chunk(records)
        progress.update(len(chunk))
        progress.set_postfix(acc=f"{sum(correct) / (n * (first + len(chunk))):.3f}")
    progress.close()
    scores = [ProblemScore(p.id, n, c, p.level, p.subject) for p, c in zip(problems, correct)]
    total = n * len(problems)
    return EvalResult(
        n_problems=len(problems), n_samples=n, ks=ks, pass_at_k=pass_at_k_row(scores, ks),
        accuracy=mean_accuracy([(s.n, s.correct) for s in scores]),
        by_level=by_level(scores, ks), by_subject=by_subject(scores, ks), per_problem=scores,
        truncated=1 - finished / total, mean_completion_tokens=tokens / total,
        verifier={**VerifierStats.difference(verifier_stats.snapshot(), stats_before),
                  "no_answer": no_answer},
        wall_time_s=time.perf_counter() - start,
        settings={"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                  "seed": seed, "batch_size": batch_size, "draw": draw,
                  "reward": getattr(reward_fn, "__name__", str(reward_fn))},
        samples=samples,
    )




def _progress(total: int, enabled: bool) -> Any:
    return tqdm(total=total, desc="eval", unit="problem", disable=not enabled)
