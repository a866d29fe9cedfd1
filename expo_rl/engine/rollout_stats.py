"""Per-term statistics of a step's rows, over all processes.

``<term>/reward_mean``      mean reward of the scored rows
``<term>/accuracy``         share of scored rows with reward > 0.5 (correct, for the 0/1 verifier reward)
``<term>/response_len``     mean completion length in tokens
``<term>/stopped``          share of completions that ended at EOS (the rest hit the length cap)
``<term>/zero_signal_groups``  groups of >= 2 outputs whose rewards are all equal: with
                            group-normalised advantages they carry no learning signal (SPEC 2.5)
``<term>/groups``           number of such groups in the step (the denominator)
``<term>/zero_signal_fraction``  zero_signal_groups / groups
``<term>/all_wrong_fraction``    share of those groups with no correct output (where GRPO has no
                            positive signal and ExPO's explanations are meant to help)
``<term>/accuracy/L<level>``  accuracy of the scored rows of each problem level (``Row.fields["level"]``)
``<term>/reward/<label>``   mean of each weighted reward on its own (terms with ``rewards:``)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from accelerate.utils import gather_object

from expo_rl.data.records import Row
from expo_rl.verify import verifier_stats


def _local_summary(rows: list[Row]) -> dict[str, Any]:
    rewards = [r.reward for r in rows if r.reward is not None]
    groups: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        if r.group >= 0 and r.reward is not None:
            groups[r.group].append(r.reward)
    multi = [g for g in groups.values() if len(g) >= 2]
    levels: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        level = r.fields.get("level")
        if level is not None and r.reward is not None:
            levels[str(level)][0] += r.reward > 0.5
            levels[str(level)][1] += 1
    parts: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        for label, value in r.reward_parts.items():
            parts[label][0] += value
            parts[label][1] += 1
    return {
        "parts": dict(parts),
        "levels": dict(levels),
        "all_wrong": sum(1 for g in multi if max(g) <= 0.5),
        "rows": len(rows),
        "scored": len(rewards),
        "reward_sum": sum(rewards),
        "correct": sum(1 for v in rewards if v > 0.5),
        "tokens": sum(len(r.completion_ids) for r in rows),
        "stopped": sum(1 for r in rows if r.finished),
        "groups": len(multi),
        "zero_signal": sum(1 for g in multi if max(g) == min(g)),
    }


def row_metrics(accelerator: Any, terms: list[Any], rows_per_term: list[list[Row]]) -> dict[str, float]:
    """Metrics of every term's rows (summed over processes before dividing)."""
    local = [_local_summary(rows) for rows in rows_per_term]
    parts = gather_object([local]) if accelerator.num_processes > 1 else [local]
    metrics: dict[str, float] = {}
    for i, term in enumerate(terms):
        total = {k: sum(part[i][k] for part in parts) for k in local[i] if k not in ("levels", "parts")}
        name = term.name
        metrics[f"{name}/rows"] = total["rows"]
        if total["rows"]:
            metrics[f"{name}/response_len"] = total["tokens"] / total["rows"]
            metrics[f"{name}/stopped"] = total["stopped"] / total["rows"]
        if total["scored"]:
            metrics[f"{name}/reward_mean"] = total["reward_sum"] / total["scored"]
            metrics[f"{name}/accuracy"] = total["correct"] / total["scored"]
        for label, (value, count) in _summed(parts, i, "parts").items():
            metrics[f"{name}/reward/{label}"] = value / count
        if total["groups"]:
            metrics[f"{name}/groups"] = total["groups"]
            metrics[f"{name}/zero_signal_groups"] = total["zero_signal"]
            metrics[f"{name}/zero_signal_fraction"] = total["zero_signal"] / total["groups"]
            metrics[f"{name}/all_wrong_fraction"] = total["all_wrong"] / total["groups"]
        for level, (correct, scored) in _summed(parts, i, "levels").items():
            metrics[f"{name}/accuracy/L{level}"] = correct / scored
    return metrics


def _summed(parts: list[list[dict[str, Any]]], term: int, key: str) -> dict[str, list[float]]:
    """``label -> [sum, count]`` of a term's ``key`` table summed over processes, labels sorted."""
    total: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for part in parts:
        for label, (value, count) in part[term][key].items():
            total[label][0] += value
            total[label][1] += count
    return dict(sorted(total.items()))


VERIFIER_KEYS = ("calls", "timeouts", "pred_parse_failures", "gold_parse_failures", "errors")


def verifier_metrics(before: dict[str, float]) -> dict[str, float]:
    """``verify/<counter>``: what the math verifier did since snapshot ``before`` on this process
    (calls, timeouts, parse failures of predictions and of gold answers, errors)."""
    after = verifier_stats.snapshot()
    return {f"verify/{key}": float(after[key] - before.get(key, 0)) for key in VERIFIER_KEYS}
