"""ExPO diagnostics: is a sample in-distribution (Property 1), does it lead to ``a*`` (Property 2)?

For each question ``q`` with answer ``a*`` (SPEC section 3.3; ExPO paper Figure 2 and Lemma 2):

* ``n`` self-explanations ``c~ ~ pi(. | q, a*)`` (all of them, whatever their final answer:
  Lemma 2 is an expectation over ``pi(. | q, a*)``; acceptance is recorded per sample and the
  accepted-only NLL is reported too), ``n`` own samples ``c ~ pi(. | q)``, and the expert
  solution ``c_E``;
* every text is scored under the PLAIN prompt, in one forward pass each (CPU time is the
  limit on real models):

  - ``c~`` and ``c`` are cut into chain of thought ``c`` + final-answer sentence
    (``split_final_answer``; a truncated sample without an answer is all chain of thought) and
    scored as ``prompt(q) + c + lead + a* + close + tail``. ``nll_per_token = -(1/|c|) sum_t
    log pi(c_t | q, c_<t)`` over the chain of thought (Figure 2), and ``reachability =
    pi(a* + close | q, c, lead) = exp(sum of the answer tokens' log-probs)`` (Lemma 2:
    ``E_{c~}[pi(a*|q,c~)] >= E_c[pi(a*|q,c)]``); ``lead``/``close`` are the task's answer
    format, e.g. ``\\n\\nThe final answer is $\\boxed{`` and ``}``;
  - ``c_E`` is scored as written (MATH: the whole solution, whose last sentence often carries
    reasoning around the ``\\boxed{}``; GSM8K: the reasoning without calculator annotations
    and ``####`` line): ``nll_per_token`` over all its tokens.

  With ``score_full_text`` a second pass adds ``nll_per_token_text`` (the whole text as
  written) for ``c~`` and ``c``, and the chain-of-thought scoring (NLL of ``c_E`` minus its
  answer sentence, reachability) for ``c_E``.

Summaries are ``{mean, std, n}`` over samples (std is the population std over samples); the
paired per-question comparison (``lemma2``) counts the questions where the mean reachability
of the explanations is at least that of the own samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from expo_rl.data.records import Problem
from expo_rl.expo.answer_format import (
    AnswerFormat,
    expert_solution,
    resolve_task,
    split_final_answer,
)
from expo_rl.expo.explanations import ExplainConfig, explanation_prompt, judge_explanation
from expo_rl.expo.scoring import score_segments
from expo_rl.policy import build_prompt, sample
from expo_rl.verify import extract_answer, is_equivalent

KINDS = ("self_explanation", "own_sample", "expert")


@dataclass(frozen=True)
class DiagnoseConfig:
    """Plain values that decide a diagnosis run (the CLI fills them)."""

    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 384
    draw: str = "multinomial"  # expo_rl.policy.sampling: multinomial | inverse_cdf (same distribution)
    instruction: str | None = None  # plain-prompt instruction; None = the policy default
    batch_size: int = 8
    score_batch_size: int = 4
    max_score_tokens: int | None = 2048
    score_full_text: bool = False


def plain_prompt(tokenizer: Any, problem: Problem, instruction: str | None = None) -> str:
    """The plain prompt ``q`` every ExPO sample is scored and trained under."""
    if instruction is None:
        return build_prompt(tokenizer, problem.question)
    return build_prompt(tokenizer, problem.question, instruction=instruction)


def reachability_segments(text: str, answer: str, fmt: AnswerFormat) -> list[str]:
    """``[c, lead, answer + close, tail]`` for scoring ``text``'s chain of thought ``c``."""
    cot, _ = split_final_answer(text)
    return [cot, fmt.lead, f"{answer}{fmt.close}", fmt.tail]


def _reach_fields(scores) -> dict[str, Any]:
    cot, _lead, answer, _tail = scores
    return {
        "nll_per_token_cot": cot.nll_per_token,
        "cot_tokens": cot.n_tokens,
        "log_reachability": answer.logprob,
        "reachability": math.exp(answer.logprob),
    }


def _text_fields(scores) -> dict[str, Any]:
    (text,) = scores
    return {"nll_per_token_text": text.nll_per_token, "tokens": text.n_tokens}


def _score_plan(kind: str, full_text: bool) -> tuple[str, ...]:
    """Which passes a text gets: ``reach`` ([c, lead, a*, tail]) and/or ``text`` (as written)."""
    if kind == "expert":
        return ("text", "reach") if full_text else ("text",)
    return ("reach", "text") if full_text else ("reach",)


def diagnose_batch(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    config: DiagnoseConfig,
    explain: ExplainConfig,
    *,
    seed: int | None = None,
) -> list[dict[str, Any]]:
    """Per-question diagnosis records for ``problems`` (one generation call, then the scoring passes)."""
    plain = [plain_prompt(tokenizer, p, config.instruction) for p in problems]
    hinted = [explanation_prompt(tokenizer, p, explain)[0] for p in problems]
    batch = sample(
        model,
        tokenizer,
        plain + hinted,
        n=config.n,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        seed=seed,
        batch_size=config.batch_size,
        draw=config.draw,
    )
    records = [
        {
            "id": p.id,
            "task": resolve_task(explain.task, p),
            "level": p.level,
            "source": p.source,
            "answer": p.answer,
            **{kind: [] for kind in KINDS},
        }
        for p in problems
    ]
    owners = []
    for row, prompt_index in enumerate(batch.prompt_index):
        is_explanation = prompt_index >= len(problems)
        q = prompt_index % len(problems)
        problem = problems[q]
        fmt = explain.format_for(resolve_task(explain.task, problem))
        raw = batch.texts[row]
        if is_explanation:
            judged = judge_explanation(raw, problem, explain)
            text = judged["text"]
            extra = {
                "status": judged["status"],
                "hint_mentions": judged["hint_mentions"],
                "extracted_answer": judged["extracted_answer"],
            }
            kind = "self_explanation"
        else:
            text = raw.strip()
            extracted = extract_answer(text)
            extra = {
                "extracted_answer": extracted,
                "correct": bool(extracted is not None and is_equivalent(extracted, problem.answer)),
            }
            kind = "own_sample"
        extra.update(finished=bool(batch.finished[row]), text=text)
        owners.append((q, kind, extra, text, fmt))
    for q, problem in enumerate(problems):
        solution = expert_solution(problem)
        if solution:
            fmt = explain.format_for(resolve_task(explain.task, problem))
            owners.append((q, "expert", {"text": solution}, solution, fmt))
    score_prompts, score_parts, slots = [], [], []
    for i, (q, kind, _extra, text, fmt) in enumerate(owners):
        for name in _score_plan(kind, config.score_full_text):
            score_prompts.append(plain[q])
            segments = reachability_segments(text, problems[q].answer, fmt) if name == "reach" else [text]
            score_parts.append(segments)
            slots.append((i, name))
    scores = score_segments(
        model,
        tokenizer,
        score_prompts,
        score_parts,
        batch_size=config.score_batch_size,
        max_tokens=config.max_score_tokens,
    )
    fields: list[dict[str, Any]] = [{} for _ in owners]
    for (i, name), row_scores in zip(slots, scores):
        fields[i].update(_reach_fields(row_scores) if name == "reach" else _text_fields(row_scores))
    for (q, kind, extra, _text, _fmt), found in zip(owners, fields):
        # Figure 2's NLL: the chain of thought for c~ and c, the solution as written for c_E
        nll = found.get("nll_per_token_text") if kind == "expert" else found.get("nll_per_token_cot")
        records[q][kind].append({"kind": kind, "nll_per_token": nll, **found, **extra})
    return records


def stat(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """``{mean, std, n}`` of the non-missing values (population std; ``None`` when empty)."""
    kept = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not kept:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(kept) / len(kept)
    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / len(kept))
    return {"mean": mean, "std": std, "n": len(kept)}


def _values(records: Sequence[dict[str, Any]], kind: str, key: str, accepted_only: bool = False):
    for record in records:
        for item in record[kind]:
            if accepted_only and item.get("status") != "accepted":
                continue
            yield item.get(key)


def _question_mean(samples: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return sum(values) / len(values) if values else None


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The summary written to ``diagnose.json`` (see the module docstring)."""
    summary: dict[str, Any] = {"questions": len(records)}
    for key in ("nll_per_token", "reachability", "log_reachability", "nll_per_token_cot", "nll_per_token_text"):
        summary[key] = {kind: stat(_values(records, kind, key)) for kind in KINDS}
    summary["nll_per_token_accepted_explanations"] = stat(
        _values(records, "self_explanation", "nll_per_token", accepted_only=True)
    )
    explanations = [s for r in records for s in r["self_explanation"]]
    own = [s for r in records for s in r["own_sample"]]
    summary["explanation_acceptance_rate"] = (
        sum(s.get("status") == "accepted" for s in explanations) / len(explanations) if explanations else None
    )
    summary["explanation_hint_mentions"] = sum(s.get("hint_mentions", 0) for s in explanations)
    summary["own_sample_accuracy"] = sum(s["correct"] for s in own) / len(own) if own else None
    summary["lemma2"] = paired_comparison(records, "reachability")
    summary["nll_paired"] = paired_comparison(records, "nll_per_token")
    return summary


def paired_comparison(records: Sequence[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per question: mean over explanations minus mean over own samples of ``key``."""
    differences = []
    for record in records:
        explained = _question_mean(record["self_explanation"], key)
        own = _question_mean(record["own_sample"], key)
        if explained is not None and own is not None:
            differences.append(explained - own)
    return {
        "difference_self_minus_own": stat(differences),
        "fraction_self_ge_own": sum(d >= 0 for d in differences) / len(differences) if differences else None,
    }


def group_key(record: dict[str, Any]) -> str:
    """``"gsm8k"`` or ``"math/L<level>"`` (how summaries are split by data set and level)."""
    if record["task"] == "gsm8k":
        return "gsm8k"
    return f"math/L{record['level']}" if record.get("level") is not None else "math"


def summarize_by_group(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(group_key(record), []).append(record)
    return {name: summarize(rows) for name, rows in sorted(groups.items())}


def format_table(summary: dict[str, Any]) -> str:
    """A plain-text table: rows = kinds, columns = NLL/token and reachability (mean +- std, n)."""

    def cell(entry: dict[str, Any], digits: int) -> str:
        if not entry or entry["n"] == 0:
            return "-"
        return f"{entry['mean']:.{digits}g} +- {entry['std']:.{digits}g} (n={entry['n']})"

    header = f"{'sample':<18}{'NLL per token':>30}{'reachability pi(a*|q,c)':>34}"
    lines = [header, "-" * len(header)]
    for kind in KINDS:
        lines.append(
            f"{kind:<18}{cell(summary['nll_per_token'][kind], 3):>30}"
            f"{cell(summary['reachability'][kind], 4):>34}"
        )
    lemma = summary["lemma2"]
    if lemma["fraction_self_ge_own"] is not None:
        lines.append(
            f"questions with mean reachability(c~) >= reachability(c): "
            f"{lemma['fraction_self_ge_own']:.3f} of {lemma['difference_self_minus_own']['n']}"
        )
    if summary.get("explanation_acceptance_rate") is not None:
        lines.append(
            f"explanation acceptance rate {summary['explanation_acceptance_rate']:.3f}; "
            f"own-sample accuracy {summary['own_sample_accuracy']:.3f}"
        )
    return "\n".join(lines)


def plot_histograms(records: Sequence[dict[str, Any]], out_dir) -> list[str]:
    """PNG histograms of per-sample NLL/token and log10 reachability; returns the file paths."""
    # optional and slow to import: only the histograms need it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    labels = {"self_explanation": "self-explanation c~", "own_sample": "own sample c", "expert": "expert c_E"}
    for key, title, transform in (
        ("nll_per_token", "per-token NLL under the plain prompt (Figure 2)", lambda v: v),
        (
            "log_reachability",
            "log10 pi(a* | q, c) (Lemma 2)",
            lambda v: max(v / math.log(10), -30.0),
        ),
    ):
        figure, axes = plt.subplots(figsize=(7, 4))
        series = {kind: [transform(v) for v in _values(records, kind, key) if v is not None] for kind in KINDS}
        pooled = [v for values in series.values() for v in values]
        if pooled:  # one set of bins and densities: kinds with different sample counts stay comparable
            low, high = min(pooled), max(pooled)
            bins = [low + (high - low) * i / 40 for i in range(41)] if high > low else 40
            for kind, values in series.items():
                if values:
                    axes.hist(values, bins=bins, density=True, alpha=0.5, label=f"{labels[kind]} (n={len(values)})")
        axes.set_title(title)
        axes.set_ylabel("density")
        axes.legend()
        figure.tight_layout()
        path = f"{out_dir}/{key}.png"
        figure.savefig(path, dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths


__all__ = [
    "DiagnoseConfig",
    "KINDS",
    "diagnose_batch",
    "format_table",
    "plot_histograms",
    "summarize",
    "summarize_by_group",
]
