"""Per-cell figures from the two sides' raw results, the FLOP model, and the printed table.

FLOPs per step (the same formula for both sides, from each side's own token counts; padding,
recomputation and attention-score FLOPs are *not* counted, so this is useful work):

    fwd(P, C) = 2 * N_body * (P + C) + 2 * V * H * C      one forward over a row: every token goes
                                                          through the body, only the C completion
                                                          tokens through the LM head
    DPO step  = 4 * sum_rows fwd(P, C)                    forward + backward of the policy (2 + 4
                                                          per parameter and token) + the reference
                                                          forward (2)
    GRPO step = 4 * sum_rows fwd(P, C)                    the same for the training and reference passes
              + 2 * N_body * sum_prompts P                 generation: prefill of each distinct prompt
              + 2 * (N_body + V * H) * sum_rows C          one forward per generated token

``N_body`` = parameters without the (tied) embedding matrix, ``V * H`` = the embedding / LM head
matrix. With ``mu = 1`` the old-policy log-probs equal the current ones and need no pass, so
they are not counted. The achieved fraction is (useful FLOPs / second) / the measured fp32
matmul peak on the same threads.

Tokens: *useful* tokens are the distinct prompt tokens (a DPO pair's or a GRPO group's prompt
once) plus the completion tokens, without padding; both sides process the same useful tokens in a
step, so useful tokens/s is a speed. *Computed* positions (``bench/token_meter.py``) are what a
side pushes through its model for them: padding, repeated prompts, the reference forward and
every generation step included; computed / useful shows which side does less work.
"""

from __future__ import annotations

import statistics
from typing import Any


def step_flops(tokens: dict[str, int], params: dict[str, int], method: str) -> float:
    body, head = params["body"], params["vocab"] * params["hidden"]
    p, c = tokens["prompt_tokens"], tokens["completion_tokens"]
    flops = 4.0 * (2 * body * (p + c) + 2 * head * c)
    if method == "grpo":
        flops += 2.0 * body * tokens["distinct_prompt_tokens"] + 2.0 * (body + head) * tokens["generated_tokens"]
    return flops


def side_summary(raw: dict[str, Any], warmup: int, method: str, peak_flops: float) -> dict[str, Any]:
    """Median s/step over the timed steps, useful tokens/s, FLOP/s and its share of the matmul peak."""
    times = raw["step_s"][warmup:]
    tokens = raw["steps_tokens"][warmup:len(raw["step_s"])]
    if not times:
        raise ValueError("no timed steps (steps must be >= 1)")
    total_time = sum(times)
    useful = sum(t["distinct_prompt_tokens"] + t["completion_tokens"] for t in tokens)
    flops = sum(step_flops(t, raw["params"], method) for t in tokens)
    summary = {
        "s_per_step": statistics.median(times),
        "step_s": times,
        "useful_tokens_per_s": useful / total_time,
        "useful_tokens_per_step": useful / len(tokens),
        "flops_per_step": flops / len(tokens),
        "flops_per_s": flops / total_time,
        "peak_fraction": flops / total_time / peak_flops,
        "peak_mib": raw["peak_rss_mib"],
        "mean_completion_tokens": sum(t["completion_tokens"] for t in tokens) / sum(t["rows"] for t in tokens),
    }
    computed = raw.get("computed_tokens", [])[warmup:len(raw["step_s"])]
    if computed:
        summary["computed_tokens_per_step"] = sum(computed) / len(computed)
        summary["computed_per_useful"] = sum(computed) / useful
    if "phases" in raw:
        phases = raw["phases"][warmup:]
        summary["sample_s"] = statistics.median(p["sample_s"] for p in phases)
        summary["update_s"] = statistics.median(p["update_s"] for p in phases)
    return summary


def cell_summary(results: dict[str, dict[str, Any]], warmup: int, method: str, peak_flops: float
                 ) -> dict[str, Any]:
    """``{trl_s_per_step, ours_s_per_step, speedup, trl_peak_mib, ours_peak_mib, ...}`` for one cell."""
    cell: dict[str, Any] = {}
    for side, raw in results.items():
        for key, value in side_summary(raw, warmup, method, peak_flops).items():
            cell[f"{side}_{key}"] = value
    if "trl" in results and "ours" in results:
        cell["speedup"] = cell["trl_s_per_step"] / cell["ours_s_per_step"]
        cell["memory_ratio"] = cell["ours_peak_mib"] / cell["trl_peak_mib"]
    return cell


TARGETS = {"realistic": 2.5, "uniform": 1.2}  # issue 15 (round two)


def format_table(results: dict[str, Any]) -> str:
    """One line per (method, size, workload): both sides, the ratio and the target."""
    header = (f"{'method':<5} {'size':<4} {'workload':<9} | {'TRL s/step':>10} {'ours s/step':>11} "
              f"{'speedup':>7} {'target':>6} | {'TRL useful tok/s':>16} {'ours useful tok/s':>17} | "
              f"{'TRL computed/useful':>19} {'ours computed/useful':>20} | "
              f"{'TRL %peak':>9} {'ours %peak':>10} | {'TRL MiB':>7} {'ours MiB':>8}")
    lines = [header, "-" * len(header)]

    def num(cell: dict[str, Any], key: str, fmt: str) -> str:
        return format(cell[key], fmt) if key in cell else "-"

    for method, sizes in results.items():
        for size, workloads in sizes.items():
            for workload, cell in workloads.items():
                target = TARGETS.get(workload)
                ok = "" if "speedup" not in cell or target is None else ("ok" if cell["speedup"] >= target else "MISS")
                lines.append(
                    f"{method:<5} {size:<4} {workload:<9} | {num(cell, 'trl_s_per_step', '10.3f')} "
                    f"{num(cell, 'ours_s_per_step', '11.3f')} {num(cell, 'speedup', '6.2f')}x "
                    f"{(format(target, '.1f') + 'x ' + ok) if target else '':>6} | "
                    f"{num(cell, 'trl_useful_tokens_per_s', '16.0f')} {num(cell, 'ours_useful_tokens_per_s', '17.0f')} | "
                    f"{num(cell, 'trl_computed_per_useful', '19.2f')} {num(cell, 'ours_computed_per_useful', '20.2f')} | "
                    f"{_pct(cell, 'trl_peak_fraction'):>9} {_pct(cell, 'ours_peak_fraction'):>10} | "
                    f"{num(cell, 'trl_peak_mib', '7.0f')} {num(cell, 'ours_peak_mib', '8.0f')}")
    return "\n".join(lines)


def _pct(cell: dict[str, Any], key: str) -> str:
    return f"{100 * cell[key]:.1f}%" if key in cell else "-"
