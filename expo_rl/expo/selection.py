"""Pick the questions an ExPO command works on: load a data set, filter by level, shuffle, limit
(``expo_rl.data.select_problems``; problems without a level are dropped by a level filter)."""

from __future__ import annotations

from collections.abc import Sequence

from expo_rl.data import Problem, load_problems, select_problems


def parse_levels(text: str | None) -> tuple[int, ...] | None:
    """``"1,2,3"`` or ``"1-3"`` -> ``(1, 2, 3)``; ``None``/``""`` -> ``None`` (no filter)."""
    if not text:
        return None
    levels: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                low, high = (int(x) for x in part.split("-", 1))
                levels.update(range(low, high + 1))
            elif part:
                levels.add(int(part))
    except ValueError:
        raise ValueError(f"--levels {text!r}: expected levels 1-5 like '1,2,3' or '1-3'") from None
    if not levels or not levels <= {1, 2, 3, 4, 5}:
        raise ValueError(f"--levels {text!r}: levels must be in 1-5")
    return tuple(sorted(levels))


def load_selection(
    data: str,
    *,
    split: str | None = None,
    data_dir: str | None = None,
    levels: Sequence[int] | None = None,
    limit: int | None = None,
    shuffle_seed: int | None = None,
) -> list[Problem]:
    """``load_problems(data, split)`` then ``select_problems``; errors when nothing is left."""
    loaded = load_problems(data, split, data_dir=data_dir)
    chosen = select_problems(loaded.problems, levels=levels, limit=limit, shuffle_seed=shuffle_seed)
    if not chosen:
        raise ValueError(f"--data {data!r} with levels={levels} has no problems")
    return chosen
