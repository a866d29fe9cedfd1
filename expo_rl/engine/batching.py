"""Rows from the sources -> tensors for the shared step, split into micro-batches.

A *unit* is the smallest set of rows that must stay together in one forward pass: a GRPO group
(rows sharing ``group``), a DPO pair (rows sharing ``pair``), or a single row. Micro-batches are
made of whole units, so group statistics and pair margins never straddle two micro-batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expo_rl.sources import Row


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


def split_micro_batches(rows: list[TaggedRow], count: int) -> list[list[TaggedRow]]:
    """``count`` micro-batches of whole units, as equal in rows as a greedy fill allows."""
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
    term_index, group_index, pair_index, pair_sign [B] (long; -1 / 0 when unused).
    """
    from expo_rl.policy import pack_sequences

    input_ids, attention_mask, completion_mask = pack_sequences(
        [r.row.prompt_ids for r in rows], [r.row.completion_ids for r in rows], pad_id)

    def long(values: list[int]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.long, device=device)

    return {
        "input_ids": input_ids.to(device),
        "attention_mask": attention_mask.to(device),
        "completion_mask": completion_mask.to(device),
        "rewards": torch.tensor([r.row.reward or 0.0 for r in rows], dtype=torch.float32, device=device),
        "term_index": long([r.term for r in rows]),
        "group_index": long([r.group for r in rows]),
        "pair_index": long([r.pair for r in rows]),
        "pair_sign": long([r.row.pair_sign for r in rows]),
    }
