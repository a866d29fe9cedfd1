"""Train one method of the demo for one seed: sample -> score -> loss terms -> shared step.

The loop reads top to bottom (STYLE): for each step, take the step's questions from the shared
training pool, sample G outputs per question from the current policy (GRPO family) or take the
step's preference pairs (DPO family), add the positives the method uses (self-explanations or
expert solutions, SPEC 3.4/3.5), and run one update through ``expo_rl.engine.step``. What it
records per step: the training rollouts' accuracy per level, the fraction of zero-signal groups
(SPEC 2.5), each term's own objective (e.g. the DPO loss), and held-out accuracy every
``curve_every`` steps.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.demo.evaluate import evaluate_levels
from expo_rl.demo.explanations import ExplanationSet, self_explanations
from expo_rl.demo.methods import Method
from expo_rl.demo.rollouts import sample_rows, text_row
from expo_rl.demo.tasks.base import DemoTask
from expo_rl.demo.update import frozen_copy, make_updater
from expo_rl.engine.step import make_step_term
from expo_rl.sources import Row


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters shared by every method (plain values; the CLI layer fills them)."""

    steps: int
    questions_per_step: int
    group_size: int = 8
    lr: float = 2e-4
    # 2e-4 (the GRPO lr) drove every DPO variant of `expo-rl demo --full` far below the base model
    # on all levels (seed 0: mean pass@8 over levels 0.9-20.9% vs 66.2%); at 2e-5 they keep levels
    # 1-3 (docs/notes/issue6-demo.md, "DPO learning rate").
    dpo_lr: float = 2e-5
    kl_beta: float = 0.04
    dpo_beta: float = 0.1
    sft_weight: float = 1.0          # lambda of ExP-GRPO / SFT-GT-CoT
    temperature: float = 1.0
    explanation_tries: int = 4
    curve_every: int = 0             # held-out curve points every k steps (0: start and end only)
    curve_questions: int = 16
    curve_samples: int = 4


@dataclass
class Positives:
    """Per-problem positive and (DPO) rejected rows, shared by the methods of one seed."""

    explanations: ExplanationSet
    rejected: dict[str, Row] = field(default_factory=dict)


@dataclass
class TrainRecord:
    """What one run logged: per-step series and held-out curve points."""

    method: str
    seed: int
    steps: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)
    refreshes: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def initial_positives(policy: Any, tokenizer: Any, task: DemoTask, problems: list[Problem], *,
                      settings: TrainSettings, seed: int, want_rejected: bool) -> Positives:
    """Self-explanations (and wrong plain-prompt samples for DPO) from the initial policy."""
    explanations = self_explanations(policy, tokenizer, task, problems, tries=settings.explanation_tries,
                                     temperature=settings.temperature, seed=seed)
    rejected = wrong_samples(policy, tokenizer, task, problems, tries=2, temperature=settings.temperature,
                             seed=seed + 1) if want_rejected else {}
    return Positives(explanations, rejected)


def wrong_samples(policy: Any, tokenizer: Any, task: DemoTask, problems: list[Problem], *, tries: int,
                  temperature: float, seed: int) -> dict[str, Row]:
    """One incorrect plain-prompt sample per problem where any of ``tries`` is wrong (SPEC 3.4:
    the rejected response, "prefer an incorrect sample")."""
    out: dict[str, Row] = {}
    for row in sample_rows(policy, tokenizer, task, problems, n=tries, temperature=temperature, seed=seed):
        if row.reward == 0.0 and row.problem_id not in out:
            out[row.problem_id] = row
    return out


def train_method(method: Method, base: Any, tokenizer: Any, task: DemoTask, pool: list[Problem],
                 positives: Positives, settings: TrainSettings, *, seed: int,
                 curve_set: dict[int, list[Problem]], progress: Any | None = None) -> tuple[Any, TrainRecord]:
    """Train a copy of ``base`` with ``method``; returns (trained model, record)."""
    import time

    import torch

    torch.manual_seed(seed)
    started = time.perf_counter()
    model = frozen_copy(base)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    terms = method_terms(method, settings)
    lr = settings.dpo_lr if method.family == "dpo" else settings.lr
    updater = make_updater(model, terms, lr=lr, total_updates=settings.steps, pad_id=tokenizer.pad_token_id,
                           reference=base)
    record = TrainRecord(method.name, seed)
    current = positives
    q = settings.questions_per_step
    for step in range(settings.steps):
        problems = pool[step * q:(step + 1) * q]
        if method.online and step % method.refresh_every == 0:
            upcoming = pool[step * q:(step + method.refresh_every) * q]
            current = refreshed_positives(method, model, tokenizer, task, upcoming, settings,
                                          seed=seed * 100_003 + step, record=record, step=step)
        if _is_curve_step(step, settings):
            record.curve.append(curve_point(model, tokenizer, task, curve_set, settings, step, seed))
        rows_per_term, logged = step_rows(method, model, tokenizer, task, problems, current, settings,
                                          seed=seed * 1_000_003 + step)
        stats = updater.update(rows_per_term)
        record.steps.append({"step": step + 1, **logged, **stats})
        if progress is not None:
            progress.update(1)
    record.curve.append(curve_point(model, tokenizer, task, curve_set, settings, settings.steps, seed))
    record.seconds = time.perf_counter() - started
    return model, record


def method_terms(method: Method, settings: TrainSettings) -> list:
    """The loss terms of ``method`` (engine step terms, in row-list order)."""
    if method.family == "dpo":
        return [make_step_term("dpo", name="dpo", beta=settings.dpo_beta)]
    terms = [make_step_term("grpo", name="grpo", beta=settings.kl_beta)]
    if method.positive != "none":
        terms.append(make_step_term("sft", name="sft_" + method.positive, weight=settings.sft_weight))
    return terms


def step_rows(method: Method, model: Any, tokenizer: Any, task: DemoTask, problems: list[Problem],
              positives: Positives, settings: TrainSettings, *, seed: int) -> tuple[list[list[Row]], dict]:
    """The rows of each loss term for one step, and what to log about them."""
    if method.family == "dpo":
        pairs = preference_pairs(method, tokenizer, task, problems, positives)
        return [pairs], {"pairs": len(pairs) / 2}
    rows = sample_rows(model, tokenizer, task, problems, n=settings.group_size,
                       temperature=settings.temperature, seed=seed)
    logged = rollout_stats(rows, problems, settings.group_size)
    if method.positive == "none":
        return [rows], logged
    positive_rows = [positive_row(method, tokenizer, task, p, positives) for p in problems]
    positive_rows = [r for r in positive_rows if r is not None]
    logged["positives"] = len(positive_rows) / len(problems)
    return [rows, positive_rows], logged


def positive_row(method: Method, tokenizer: Any, task: DemoTask, problem: Problem,
                 positives: Positives) -> Row | None:
    if method.positive == "expert":
        return text_row(tokenizer, task, problem, problem.solution)
    return positives.explanations.rows.get(problem.id)


def preference_pairs(method: Method, tokenizer: Any, task: DemoTask, problems: list[Problem],
                     positives: Positives) -> list[Row]:
    """Rows of (chosen, rejected) pairs: ``pair`` = pair id, ``pair_sign`` +1 / -1."""
    from dataclasses import replace

    rows: list[Row] = []
    for problem in problems:
        chosen = positive_row(method, tokenizer, task, problem, positives)
        rejected = positives.rejected.get(problem.id)
        if chosen is None or rejected is None:
            continue
        pair = len(rows) // 2
        rows.append(replace(chosen, group=-1, pair=pair, pair_sign=1))
        rows.append(replace(rejected, group=-1, pair=pair, pair_sign=-1))
    return rows


def refreshed_positives(method: Method, model: Any, tokenizer: Any, task: DemoTask,
                        problems: list[Problem], settings: TrainSettings, *, seed: int,
                        record: TrainRecord, step: int) -> Positives:
    """Positives (and DPO rejected samples) regenerated from the current policy."""
    explanations = ExplanationSet()
    if method.positive == "self_explanation":
        explanations = self_explanations(model, tokenizer, task, problems, tries=settings.explanation_tries,
                                         temperature=settings.temperature, seed=seed, strict=method.strict)
    rejected = {}
    if method.family == "dpo":
        rejected = wrong_samples(model, tokenizer, task, problems, tries=2,
                                 temperature=settings.temperature, seed=seed + 1)
    record.refreshes.append({"step": step, "coverage": explanations.coverage,
                             "hinted_correct": explanations.hinted_correct,
                             "hinted_strict": explanations.hinted_strict})
    return Positives(explanations, rejected)


def rollout_stats(rows: list[Row], problems: list[Problem], group_size: int) -> dict[str, float]:
    """Training-batch accuracy per level and the zero-signal group fraction (SPEC 2.5)."""
    by_level: dict[int, list[float]] = defaultdict(list)
    groups: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        by_level[problems[row.group].level].append(row.reward)
        groups[row.group].append(row.reward)
    zero = sum(1 for rewards in groups.values() if len(set(rewards)) == 1)
    stats = {f"train_acc/L{level}": sum(v) / len(v) for level, v in sorted(by_level.items())}
    stats["zero_signal_fraction"] = zero / max(1, len(groups))
    stats["all_wrong_fraction"] = sum(1 for r in groups.values() if max(r) == 0.0) / max(1, len(groups))
    return stats


def _is_curve_step(step: int, settings: TrainSettings) -> bool:
    return step == 0 or (settings.curve_every > 0 and step % settings.curve_every == 0)


def curve_point(model: Any, tokenizer: Any, task: DemoTask, curve_set: dict[int, list[Problem]],
                settings: TrainSettings, step: int, seed: int) -> dict[str, Any]:
    """Held-out pass@1 per level on the small curve set at ``step``."""
    if not curve_set:
        return {"step": step}
    result = evaluate_levels(model, tokenizer, task, curve_set, n=settings.curve_samples, ks=(1,),
                             temperature=settings.temperature, seed=seed * 31 + 5)
    return {"step": step, **{f"L{level}": v["pass@1"] for level, v in result.items()}}
