"""Length-bucketed micro-batches: whole units, the requested count, less padding than arrival
order, never a micro-batch larger (rows x width) than arrival order's largest."""

from __future__ import annotations

import random

import pytest

from expo_rl.engine.batching import split_micro_batches, tag_rows, units
from expo_rl.sources import Row


def padded(batches) -> list[int]:
    return [len(b) * max(len(r.row.prompt_ids) + len(r.row.completion_ids) for r in b) for b in batches]


def pairs(count: int, seed: int = 0):
    rng = random.Random(seed)
    rows = []
    for p in range(count):
        for sign in (1, -1):
            rows.append(Row(prompt_ids=[1] * rng.randint(10, 300), completion_ids=[2] * rng.randint(10, 512),
                            problem_id=str(p), reference="", pair=p, pair_sign=sign))
    return tag_rows([rows])


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_bucketed_split_is_whole_units_with_less_padding(count):
    tagged = pairs(64)
    arrival = split_micro_batches(tagged, count, by_length=False)
    bucketed = split_micro_batches(tagged, count)
    assert len(bucketed) == count and all(bucketed)
    assert sorted(id(r) for b in bucketed for r in b) == sorted(id(r) for r in tagged)
    for unit in units(tagged):
        members = {id(tagged[i]) for i in unit}
        assert sum(bool(members & {id(r) for r in b}) for b in bucketed) == 1
    assert max(padded(bucketed)) <= max(padded(arrival))
    if count == 1:
        assert padded(bucketed) == padded(arrival)
    else:
        assert sum(padded(bucketed)) < 0.9 * sum(padded(arrival))


def test_large_batches_use_sorted_equal_runs():
    tagged = pairs(600, seed=1)  # 8 * 600^2 > DP_LIMIT: the fallback path
    bucketed = split_micro_batches(tagged, 8)
    assert [len(b) for b in bucketed] == [150] * 8
    assert sum(padded(bucketed)) < 0.9 * sum(padded(split_micro_batches(tagged, 8, by_length=False)))
