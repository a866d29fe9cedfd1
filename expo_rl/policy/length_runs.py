"""The cheapest cut of rows into padded runs (pure; used by ``logprobs.length_sub_batches`` for a
forward's rows and by ``shared_prefix`` for the suffixes on a shared prompt).

Rows are sorted by span (``end - first``, then ``first``); a run of consecutive sorted rows costs
``rows x (max end - min first) + call_tokens``: the padded tokens it sends through the model plus
a fixed charge per forward call. The exact minimum over all cuts is a dynamic programme over the
sorted rows, O(rows^2). Written by hand: a 15-line programme no library offers in this form.
"""

from __future__ import annotations

from collections.abc import Sequence


def cheapest_runs(first: Sequence[int], end: Sequence[int], call_tokens: int) -> tuple[float, list[list[int]]]:
    """``(cost, runs)``: the minimum total cost and its runs, each a list of row indices in sorted order."""
    order = sorted(range(len(first)), key=lambda i: (end[i] - first[i], first[i]))
    lo, hi = [first[i] for i in order], [end[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)
    back = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        a, b = lo[j - 1], hi[j - 1]
        for i in range(j - 1, -1, -1):  # run = sorted rows i..j-1
            a, b = min(a, lo[i]), max(b, hi[i])
            cost = best[i] + (j - i) * (b - a) + call_tokens
            if cost < best[j]:
                best[j], back[j] = cost, i
    runs, j = [], len(order)
    while j > 0:
        i = back[j]
        runs.append(order[i:j])
        j = i
    return best[len(order)], runs[::-1]
