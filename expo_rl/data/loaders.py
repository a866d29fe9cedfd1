"""``load_problems``: one entry point for every data set the project reads.

Names (files under the data folder, see :mod:`expo_rl.data.paths`):

| name | file | schema |
| --- | --- | --- |
| ``math500`` | ``math/math500.jsonl`` | MATH (all keys required, ``level`` may be null) |
| ``math_train`` | ``math/train.jsonl`` | MATH |
| ``gsm8k_test`` (alias ``gsm8k``) | ``gsm8k/test.jsonl`` | GSM8K (``answer`` = reasoning ``#### n``) |
| ``gsm8k_train`` | ``gsm8k/train.jsonl`` | GSM8K |

``math`` and ``gsm8k`` also take ``split`` ("test"/"train"). Anything else: a path to a
``.jsonl`` file (relative to the working directory or to the data folder), or
``hf:<id-or-path>[:split]`` for Hugging Face ``datasets``. Files of other shapes take a field
map (``fields={"question": "prompt", "answer": "target"}``) or ``schema="math"|"gsm8k"|"generic"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from expo_rl.data.filters import select_problems
from expo_rl.data.hf import read_hf
from expo_rl.data.jsonl import read_jsonl
from expo_rl.data.paths import resolve_data_dir
from expo_rl.data.result import DataError, LoadResult, OnError, check_on_error
from expo_rl.data.schema import GSM8K_FIELDS, MATH_FIELDS, SCHEMAS, FieldMap

BUILTIN: dict[str, tuple[str, FieldMap, str]] = {
    # name: (file under the data folder, schema, split it is)
    "math500": ("math/math500.jsonl", MATH_FIELDS, "test"),
    "math_train": ("math/train.jsonl", MATH_FIELDS, "train"),
    "gsm8k_test": ("gsm8k/test.jsonl", GSM8K_FIELDS, "test"),
    "gsm8k_train": ("gsm8k/train.jsonl", GSM8K_FIELDS, "train"),
}
ALIASES = {"gsm8k": "gsm8k_test", "math": "math500"}
_FAMILY_SPLITS = {"math": {"test": "math500", "train": "math_train"},
                  "gsm8k": {"test": "gsm8k_test", "train": "gsm8k_train"}}


def dataset_names() -> list[str]:
    """Every built-in name and alias."""
    return sorted([*BUILTIN, *ALIASES])


def _builtin_name(name: str, split: str | None) -> str:
    if name in _FAMILY_SPLITS and split is not None:
        if split not in _FAMILY_SPLITS[name]:
            raise DataError(f"data {name!r}: split {split!r} not available; allowed: "
                            f"{', '.join(_FAMILY_SPLITS[name])}")
        return _FAMILY_SPLITS[name][split]
    resolved = ALIASES.get(name, name)
    if split is not None and BUILTIN[resolved][2] != split:
        raise DataError(f"data {name!r} is the {BUILTIN[resolved][2]} split; split={split!r} "
                        f"conflicts (allowed names: {', '.join(dataset_names())})")
    return resolved


def _field_map(fields: Mapping[str, str] | FieldMap | None, schema: str | None) -> FieldMap | None:
    if schema is not None and schema not in SCHEMAS:
        raise DataError(f"schema={schema!r}: allowed values are {', '.join(SCHEMAS)}")
    base = SCHEMAS[schema] if schema else None
    if isinstance(fields, FieldMap):
        return fields
    if fields:
        return FieldMap.from_mapping(fields, base)
    return base


def _resolve_path(name: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if name.endswith((".jsonl", ".json")):
        try:
            under_data = resolve_data_dir(data_dir) / name
        except DataError:
            under_data = None
        if under_data is not None and under_data.is_file():
            return under_data
        raise DataError(f"data file {name!r} does not exist (looked in the working directory"
                        f"{' and ' + str(under_data.parent) if under_data is not None else ''})")
    return None


def load_problems(
    name_or_path: str,
    split: str | None = None,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    on_error: OnError = "raise",
    levels: int | Iterable[int] | None = None,
    subjects: str | Iterable[str] | None = None,
    shuffle_seed: int | None = None,
    fields: Mapping[str, str] | FieldMap | None = None,
    schema: str | None = None,
) -> LoadResult:
    """Load a data set by name, path or ``hf:`` spec (module docstring), then filter.

    ``on_error="raise"`` (default) stops at the first malformed row with an error naming the
    file, line and field; ``"skip"`` leaves such rows out and counts them in the result
    (``skipped``, ``skip_reasons``). Filters apply in the order levels/subjects -> shuffle with
    ``shuffle_seed`` -> ``limit``; ``filtered_out`` counts what they removed.
    """
    check_on_error(on_error)
    fmap = _field_map(fields, schema)
    if name_or_path.startswith("hf:"):
        result = read_hf(name_or_path[3:], split, fmap, on_error=on_error)
    elif name_or_path in BUILTIN or name_or_path in ALIASES:
        name = _builtin_name(name_or_path, split)
        relative, builtin_fields, _ = BUILTIN[name]
        folder = resolve_data_dir(data_dir)
        path = folder / relative
        if not path.is_file():
            raise DataError(f"data {name!r}: {path} does not exist (data folder {folder}; "
                            "set --data-dir or $EXPO_RL_DATA)")
        result = read_jsonl(path, fmap or builtin_fields, source=name, on_error=on_error)
    else:
        path = _resolve_path(name_or_path, data_dir)
        if path is None:
            raise DataError(f"unknown data {name_or_path!r}: use one of "
                            f"{', '.join(dataset_names())}, a path to a .jsonl file, or "
                            "hf:<dataset id or local path>[:split]")
        if split is not None:
            raise DataError(f"data {name_or_path!r} is a single file; split={split!r} has no "
                            "meaning for it")
        result = read_jsonl(path, fmap, on_error=on_error)
    before = len(result.problems)
    result.problems = select_problems(result.problems, levels=levels, subjects=subjects,
                                      limit=limit, shuffle_seed=shuffle_seed)
    result.filtered_out = before - len(result.problems)
    return result
