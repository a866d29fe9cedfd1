"""Atomic checkpoints with resume from the last complete one.

Layout of ``<output_dir>/checkpoints/step-000012/``:

    policy/              the policy in Hugging Face format (``save_pretrained``) + tokenizer
    state/               ``accelerator.save_state``: model/optimiser (sharded under FSDP/ZeRO-3),
                         scheduler, and the python/numpy/torch(/cuda) RNG states of every process
    trainer_state.json   step, optimiser-update count, each data source's position, config
    COMPLETE             written last; a directory without it is never loaded

A checkpoint is written into ``.tmp-step-000012``, every file is fsync'ed, the marker is written,
and only then is the directory renamed to its final name (a rename is atomic on POSIX), so a
crash at any point leaves either the previous checkpoints or a temp directory that resume
ignores and the next save removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "COMPLETE"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{6,})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, path), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def find_latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint, or None (temp and unmarked directories are ignored)."""
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def _fsync_tree(path: Path) -> None:
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(accelerator: Any, root: str | Path, step: int, *, model: Any, tokenizer: Any,
                    trainer_state: dict[str, Any], keep_last: int | None = None) -> Path:
    """Write checkpoint ``step`` atomically (collective: every process must call it)."""
    root = Path(root)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp-{checkpoint_name(step)}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()

    # Gathering a sharded (FSDP/ZeRO-3) state dict is collective, so every process calls it.
    state_dict = accelerator.get_state_dict(model)
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.save_pretrained(tmp / "policy", state_dict=state_dict,
                              is_main_process=accelerator.is_main_process, safe_serialization=True)
    if accelerator.is_main_process and tokenizer is not None:
        tokenizer.save_pretrained(tmp / "policy")
    accelerator.save_state(str(tmp / "state"))
    accelerator.wait_for_everyone()

    if accelerator.is_main_process:
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1, sort_keys=True))
        _fsync_tree(tmp)
        (tmp / MARKER).write_text(f"step {step}\n")
        _fsync_tree(tmp)
        if final.exists():  # an older save of the same step (e.g. after a resume): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
        _prune(root, keep_last)
    accelerator.wait_for_everyone()
    return final


def _prune(root: Path, keep_last: int | None) -> None:
    """Delete stale temp directories and all but the newest ``keep_last`` checkpoints; the newest
    finite checkpoint is never deleted (a diverged run keeps something to go back to)."""
    for child in root.iterdir():
        if child.name.startswith(".tmp-") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
    if keep_last is not None and keep_last > 0:
        found = list_checkpoints(root)
        finite = [path for _step, path in found if is_finite(path)]
        keep = {path for _step, path in found[-keep_last:]} | set(finite[-1:])
        for _step, path in found:
            if path not in keep:
                shutil.rmtree(path, ignore_errors=True)


def is_finite(path: str | Path) -> bool:
    """Whether a checkpoint's parameters were all finite when saved (``finite`` in its trainer
    state; checkpoints written before that key existed count as finite)."""
    try:
        return bool(json.loads((Path(path) / STATE_FILE).read_text()).get("finite", True))
    except (OSError, ValueError):
        return False


def find_latest_finite_checkpoint(root: str | Path) -> Path | None:
    """The newest complete checkpoint whose parameters were finite, or None."""
    finite = [path for _step, path in list_checkpoints(root) if is_finite(path)]
    return finite[-1] if finite else None


def load_checkpoint(accelerator: Any, path: str | Path) -> dict[str, Any]:
    """Restore model/optimiser/scheduler/RNG states from ``path``; return its trainer state."""
    path = Path(path)
    if not (path / MARKER).is_file():
        raise FileNotFoundError(f"{path} has no {MARKER} marker: an interrupted save, not loadable")
    accelerator.load_state(str(path / "state"))
    return json.loads((path / STATE_FILE).read_text())
