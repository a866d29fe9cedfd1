"""Rows from the sources -> tensors for the shared step, split into micro-batches.

A *unit* is the smallest set of rows that must stay together in one forward pass: a GRPO group
(rows sharing ``group``), a DPO pair (rows sharing ``pair``), or a single row. Micro-batches are
made of whole units, so group statistics and pair margins never straddle two micro-batches.

Length bucketing (default): each micro-batch is right-padded to its longest row, so with varied
lengths (MATH solutions of 40-512 tokens) an arrival-order mix pads about 2x. The units are
sorted by their longest row and cut into ``count`` contiguous runs with the fewest padded tokens
``sum_b rows(b) * width(b)`` (exact dynamic programme over the cut points), subject to no
micro-batch exceeding the largest padded size of the arrival-order split (so peak memory does
not grow). The gradient is unchanged: the step's loss is a sum over micro-batches with global
normalisers (``engine.step.batch_normalisers``), which no grouping of whole units changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from expo_rl.data.records import Row
from expo_rl.policy import pack_sequences

DP_LIMIT = 2_000_000  # count * units^2 above which the exact cut search (pure Python) is skipped


@dataclass
class TaggedRow:
    """A source row plus the index of its loss term and batch-unique group/pair ids."""

    row: Row
    term: int
    group: int
    pair: int


def tag_rows(rows_per_term: list[list[Row]]) -> list[TaggedRow]:
    """Concatenate the terms' rows; offset group/pair ids so they are unique across terms."""
    tagged: list[TaggedRow] = []
    group_base = pair_base = 0
    for term, rows in enumerate(rows_per_term):
        groups = [r.group for r in rows if r.group >= 0]
        pairs = [r.pair for r in rows if r.pair >= 0]
        for r in rows:
            tagged.append(TaggedRow(r, term, group_base + r.group if r.group >= 0 else -1,
                                    pair_base + r.pair if r.pair >= 0 else -1))
        group_base += max(groups, default=-1) + 1
        pair_base += max(pairs, default=-1) + 1
    return tagged


def units(rows: list[TaggedRow]) -> list[list[int]]:
    """Row indices grouped into units, in order of first appearance."""
    keys: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        if r.group >= 0:
            key = ("group", r.group)
        elif r.pair >= 0:
            key = ("pair", r.pair)
        else:
            key = ("row", i)
        keys.setdefault(key, []).append(i)
    return list(keys.values())


def split_micro_batches(rows: list[TaggedRow], count: int, *, by_length: bool = True) -> list[list[TaggedRow]]:
    """``count`` micro-batches of whole units: length-bucketed (module docstring), or with
    ``by_length=False`` in arrival order, as equal in rows as a greedy fill allows."""
    arrival = _split_in_order(rows, count)
    if not by_length or count == 1:
        return arrival
    cap = max(len(batch) * max(_width(r) for r in batch) for batch in arrival)
    sorted_units = sorted(units(rows), key=lambda unit: max(_width(rows[i]) for i in unit))
    if count * len(sorted_units) ** 2 > DP_LIMIT:  # large batches: equal-row runs of the sorted units
        return _split_in_order([rows[i] for unit in sorted_units for i in unit], count)
    widths = [max(_width(rows[i]) for i in unit) for unit in sorted_units]
    cuts = _cheapest_cuts(widths, [len(unit) for unit in sorted_units], count, cap)
    bounds = list(zip(cuts, cuts[1:] + [len(sorted_units)]))
    return [[rows[i] for unit in sorted_units[a:b] for i in unit] for a, b in bounds]


def _width(row: TaggedRow) -> int:
    return len(row.row.prompt_ids) + len(row.row.completion_ids)


def _cheapest_cuts(widths: list[int], sizes: list[int], count: int, cap: float) -> list[int]:
    """Start indices of ``count`` non-empty contiguous parts of units sorted by ``widths``
    (ascending) minimising ``sum_part rows(part) * widths[last unit of part]``, every part's
    cost at most ``cap`` (dropped if infeasible). O(count * n^2)."""
    n = len(widths)
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    for limit in (cap, math.inf):
        best = [[math.inf] * (n + 1) for _ in range(count + 1)]
        back = [[0] * (n + 1) for _ in range(count + 1)]
        best[0][0] = 0.0
        for k in range(1, count + 1):
            for j in range(k, n - (count - k) + 1):
                for i in range(k - 1, j):
                    cost = (prefix[j] - prefix[i]) * widths[j - 1]
                    if cost <= limit and best[k - 1][i] + cost < best[k][j]:
                        best[k][j], back[k][j] = best[k - 1][i] + cost, i
        if best[count][n] < math.inf:
            cuts, j = [], n
            for k in range(count, 0, -1):
                j = back[k][j]
                cuts.append(j)
            return cuts[::-1]
    raise AssertionError("unreachable: count <= number of units")


def _split_in_order(rows: list[TaggedRow], count: int) -> list[list[TaggedRow]]:
    all_units = units(rows)
    if len(all_units) < count:
        raise ValueError(f"train.grad_accum={count} micro-batches need at least {count} units "
                         f"(groups, pairs or rows) per process, this process has {len(all_units)}; "
                         f"lower train.grad_accum or raise the sources' per-step sizes")
    target = len(rows) / count
    batches: list[list[TaggedRow]] = [[] for _ in range(count)]
    filled, index = 0, 0
    for u, unit in enumerate(all_units):
        remaining = len(all_units) - u  # units left, this one included
        # move on when this batch is full, and early enough that every later batch gets a unit
        if batches[index] and index < count - 1 and (
                filled >= target * (index + 1) or remaining <= count - 1 - index):
            index += 1
        batches[index].extend(rows[i] for i in unit)
        filled += len(unit)
    return batches


def pack(rows: list[TaggedRow], *, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors of one micro-batch (right-padded to its longest row).

    Returns input_ids / attention_mask / completion_mask [B,T]; rewards [B] (0 where unscored);
    term_index, group_index, pair_index, pair_sign [B] (long; -1 / 0 when unused); truncated [B]
    (long: 1 where the sample hit the length cap, for overlong filtering); and when any row
    carries the rollout engine's log-probs, sampler_logprobs [B,T] (at completion positions) with
    sampler_mask [B,T] (True where a sampler log-prob is known).
    """
    input_ids, attention_mask, completion_mask = pack_sequences(
        [r.row.prompt_ids for r in rows], [r.row.completion_ids for r in rows], pad_id)

    def long(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    batch = {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "completion_mask": completion_mask.to(device),
        "rewards": torch.tensor([r.row.reward or 0.0 for r in rows], dtype=torch.float32, device=device),
        "term_index": long([r.term for r in rows]),
        "group_index": long([r.group for r in rows]),
        "pair_index": long([r.pair for r in rows]),
        "pair_sign": long([r.row.pair_sign for r in rows]),
        "truncated": long([int(not r.row.finished) for r in rows]),
    }
    if any(r.row.sampler_logprobs is not None for r in rows):
        batch["sampler_logprobs"], batch["sampler_mask"] = _sampler_logprobs(rows, completion_mask)
        batch["sampler_logprobs"] = batch["sampler_logprobs"].to(device)
        batch["sampler_mask"] = batch["sampler_mask"].to(device)
    return batch


def _sampler_logprobs(rows: list[TaggedRow], completion_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B,T] sampler log-probs placed at each row's completion positions, and where they are known."""
    values = torch.zeros(completion_mask.shape, dtype=torch.float32)
    known = torch.zeros(completion_mask.shape, dtype=torch.bool)
    for b, tagged in enumerate(rows):
        logprobs = tagged.row.sampler_logprobs
        if logprobs is None:
            continue
        positions = completion_mask[b].nonzero(as_tuple=True)[0]
        if len(positions) != len(logprobs):
            raise ValueError(f"row {b}: {len(logprobs)} sampler log-probs for {len(positions)} completion tokens")
        values[b, positions] = torch.tensor(logprobs, dtype=torch.float32)
        known[b, positions] = True
    return values, known
