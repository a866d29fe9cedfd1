"""Problems from Hugging Face ``datasets``: a Hub id (online), a ``save_to_disk`` folder, a
folder of data files, or a single local json/jsonl/parquet/csv file.

Spec after the ``hf:`` prefix: ``<id-or-path>[:<split>]`` or ``<hub id>:<config>:<split>``
(e.g. ``hf:HuggingFaceH4/MATH-500:test``, ``hf:openai/gsm8k:main:test``,
``hf:/data/my_set:train``). Rows go through the same checks as JSONL rows; errors name
``hf:<id> [<split>] row <n>`` (1-based).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from expo_rl.data.result import DataError, LoadResult, OnError, RowSink
from expo_rl.data.schema import FieldMap, add_row

_FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def parse_hf_spec(spec: str) -> tuple[str, str | None, str | None, bool]:
    """``"<id-or-path>[:config][:split]"`` -> (id or path, config, split, is_local_path)."""
    parts = spec.split(":")
    for end in range(len(parts), 0, -1):
        candidate = ":".join(parts[:end])
        if candidate and os.path.exists(os.path.expanduser(candidate)):
            tail = parts[end:]
            if len(tail) > 1:
                raise DataError(f"hf:{spec}: a local path takes at most one ':<split>' suffix")
            return os.path.expanduser(candidate), None, (tail[0] if tail else None), True
    if not parts[0]:
        raise DataError("hf: needs a dataset id or a local path, e.g. hf:HuggingFaceH4/MATH-500:test")
    if len(parts) > 3:
        raise DataError(f"hf:{spec}: expected hf:<id>[:<config>]:<split>")
    if len(parts) == 3:
        return parts[0], parts[1] or None, parts[2] or None, False
    return parts[0], None, (parts[1] or None) if len(parts) == 2 else None, False


def _pick_split(dataset: Any, split: str | None, label: str) -> tuple[Any, str]:
    """One split of a DatasetDict: the requested one, else 'test', else the only one."""
    if not hasattr(dataset, "keys"):
        return dataset, split or "train"
    names = list(dataset.keys())
    if split is not None:
        if split not in names:
            raise DataError(f"{label}: no split {split!r}; available: {', '.join(names)}")
        return dataset[split], split
    if "test" in names:
        return dataset["test"], "test"
    if len(names) == 1:
        return dataset[names[0]], names[0]
    raise DataError(f"{label}: several splits ({', '.join(names)}); name one as {label}:<split>")


def open_hf_dataset(spec: str, split: str | None = None) -> tuple[Any, str]:
    """(datasets.Dataset, split name) for ``spec`` (the part after ``hf:``)."""
    # optional dependency (the `hf:` loader only), and slow to import
    import datasets

    target, config, spec_split, local = parse_hf_spec(spec)
    if split is not None and spec_split is not None and split != spec_split:
        raise DataError(f"hf:{spec}: split {spec_split!r} in the name conflicts with split={split!r}")
    split = split or spec_split
    label = f"hf:{target}"
    try:
        if local:
            path = Path(target)
            if path.is_file():
                builder = _FILE_BUILDERS.get(path.suffix.lower())
                if builder is None:
                    raise DataError(f"{label}: unsupported file type {path.suffix!r}; "
                                    f"use one of {', '.join(_FILE_BUILDERS)}")
                loaded = datasets.load_dataset(builder, data_files=str(path), split="train")
                return loaded, split or "train"
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                return _pick_split(datasets.load_from_disk(str(path)), split, label)
            return _pick_split(datasets.load_dataset(str(path)), split, label)
        return _pick_split(datasets.load_dataset(target, config, split=split), split, label)
    except DataError:
        raise
    except Exception as error:  # datasets raises many types (offline, missing files, ...)
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        hint = " (HF_HUB_OFFLINE is set: only local paths work)" if offline and not local else ""
        raise DataError(f"could not load {label}{f' config {config!r}' if config else ''}"
                        f"{f' split {split!r}' if split else ''}{hint}: "
                        f"{type(error).__name__}: {error}") from error


def read_hf(spec: str, split: str | None = None, fields: FieldMap | None = None, *,
            on_error: OnError = "raise") -> LoadResult:
    """Problems from a Hugging Face data set (see the module docstring for ``spec``)."""
    dataset, split_name = open_hf_dataset(spec, split)
    target = parse_hf_spec(spec)[0]
    label = f"hf:{target} [{split_name}]"
    source = f"hf:{Path(target).name if os.path.exists(target) else target}:{split_name}"
    sink = RowSink(on_error, label)
    for index, row in enumerate(dataset):
        where = f"{label} row {index + 1}"
        fields = add_row(sink, row, fields, where=where, source=source, default_id=f"{source}/{index}")
    return sink.result
