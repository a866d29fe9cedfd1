"""``load_problems``: one entry point for every data set the project reads.

Names (files looked up in ``--data-dir`` / ``$EXPO_RL_DATA``, then in the copy the package
carries, then on the Hugging Face hub; see :mod:`expo_rl.data.paths`):

| name | file | schema |
| --- | --- | --- |
| ``math500`` | ``math/math500.jsonl`` | MATH (all keys required, ``level`` may be null) |
| ``math_train`` | ``math/train.jsonl`` | MATH |
| ``gsm8k_test`` (alias ``gsm8k``) | ``gsm8k/test.jsonl`` | GSM8K (``answer`` = reasoning ``#### n``) |
| ``gsm8k_train`` | ``gsm8k/train.jsonl`` | GSM8K |

``math`` and ``gsm8k`` also take ``split`` ("test"/"train"). Anything else: a path to a
``.jsonl`` / ``.jsonl.gz`` file (relative to the working directory or to the data folder), or
``hf:<id-or-path>[:split]`` for Hugging Face ``datasets``. Files of other shapes take a field
map (``fields={"question": "prompt", "answer": "target"}``) or ``schema="math"|"gsm8k"|"generic"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path

from expo_rl.data.filters import select_problems
from expo_rl.data.hf import read_hf
from expo_rl.data.jsonl import read_jsonl
from expo_rl.data.paths import HUB_SETS, builtin_file, find_in, resolve_data_dir
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
    """A file path: as given, else under the data folder (its ``.gz`` twin counts too)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if name.endswith((".jsonl", ".json", ".jsonl.gz")):
        try:
            folder: Path | None = resolve_data_dir(data_dir)
        except DataError:
            folder = None
        found = find_in(folder, name) if folder is not None else None
        if found is not None:
            return found
        raise DataError(f"data file {name!r} does not exist (looked in the working directory"
                        f"{' and ' + str(folder) if folder is not None else ''})")
    return None


def _load_builtin(name: str, data_dir: str | os.PathLike[str] | None, fmap: FieldMap | None,
                  on_error: OnError) -> LoadResult:
    """A named set from the user's folder, the packaged copy, or the hub (in that order)."""
    relative, builtin_fields, _ = BUILTIN[name]
    path = builtin_file(relative, data_dir)
    if path is not None:
        return read_jsonl(path, fmap or builtin_fields, source=name, on_error=on_error)
    if name not in HUB_SETS:
        raise DataError(f"data {name!r}: {relative} is neither in the data folder (--data-dir / "
                        "$EXPO_RL_DATA) nor in the installed package, and has no Hugging Face "
                        "copy in this shape; reinstall expo-rl or pass --data-dir")
    result = read_hf(HUB_SETS[name], None, fmap or builtin_fields, on_error=on_error)
    result.problems = [replace(p, source=name) for p in result.problems]
    return result


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
        result = _load_builtin(name, data_dir, fmap, on_error)
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
