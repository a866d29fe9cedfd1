"""Output directories with an owner.

* :func:`lock_output` takes ``<dir>/.expo-rl.lock`` (an ``fcntl`` lock, released by the kernel when
  its process dies, so a stale lock of a dead process is simply taken over) and refuses a second
  live writer with the holder's pid and command. ``train``, ``eval``, ``explain`` and
  ``diagnose`` hold it while they write.
* :func:`claim_train_dir` refuses a directory that already holds a run (metrics or checkpoints)
  unless the run resumes it or ``overwrite`` replaces it (its checkpoints, metrics and TensorBoard
  files are removed; ``cache/`` stays: its records are keyed by what produced them).
* :func:`check_can_save` fails before step 1 when a checkpoint could not be written: the
  directory is not writable, or the free disk is below an estimate of one checkpoint's size.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from expo_rl.errors import RunDirError

LOCK_NAME = ".expo-rl.lock"
RUN_FILES = ("metrics.jsonl", "checkpoints")
REMOVED_ON_OVERWRITE = ("metrics.jsonl", "checkpoints", "tensorboard")


class OutputLock:
    """A held lock on an output directory; :meth:`release` (or the process's death) frees it."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path, self._handle = path, handle

    def release(self) -> None:
        if self._handle is not None:
            try:
                self._handle.seek(0)
                self._handle.truncate()
                fcntl.flock(self._handle, fcntl.LOCK_UN)
            finally:
                self._handle.close()
                self._handle = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(handle: Any) -> str:
    handle.seek(0)
    try:
        info = json.loads(handle.read() or "{}")
    except ValueError:
        return "another process"
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"({info.get('command', '?')}, since {info.get('started', '?')})")


def lock_output(directory: str | Path, command: str, *, lock_file: str | Path | None = None) -> OutputLock:
    """Lock ``directory`` (created) for ``command``; RunDirError naming the holder when a live
    process already holds it. ``lock_file`` overrides ``<directory>/.expo-rl.lock`` (e.g. for an
    output that is a single file)."""
    directory = Path(directory)
    path = Path(lock_file) if lock_file is not None else directory / LOCK_NAME
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
    except OSError as error:
        raise RunDirError(f"cannot create the lock file {path}: {error.strerror or error}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        handle.close()
        raise RunDirError(f"{directory} is in use by {holder}; wait for it to finish or choose "
                          f"another output directory") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S")}))
    handle.flush()
    return OutputLock(path, handle)


def used_by_a_run(directory: str | Path) -> list[str]:
    """What in ``directory`` shows an earlier run: a non-empty metrics file, checkpoints."""
    directory = Path(directory)
    found = []
    metrics = directory / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    checkpoints = directory / "checkpoints"
    if checkpoints.is_dir():
        found += [f"checkpoints/{p.name}" for p in sorted(checkpoints.iterdir()) if not p.name.startswith(".")]
    return found


def claim_train_dir(directory: str | Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a used ``directory`` unless resuming or overwriting; ``overwrite`` clears it first."""
    directory = Path(directory)
    if resume and overwrite:
        raise RunDirError("--resume continues the run in the output directory and --overwrite "
                          "replaces it: give one of them")
    used = used_by_a_run(directory)
    if not used or resume:
        return
    if not overwrite:
        shown = ", ".join(used[:3]) + (f" and {len(used) - 3} more" if len(used) > 3 else "")
        raise RunDirError(f"train.output_dir {directory} already holds a run ({shown}); pass --resume to "
                          f"continue it, --overwrite to replace it, or set another train.output_dir")
    for name in REMOVED_ON_OVERWRITE:
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def checkpoint_bytes(num_params: int, param_bytes: int) -> int:
    """Estimated size of one checkpoint: the policy (``param_bytes`` per parameter) twice (the
    Hugging Face copy and the accelerate state) plus AdamW's two fp32 moments, plus 10%."""
    return int(num_params * (2 * param_bytes + 8) * 1.1)


def check_can_save(root: str | Path, *, num_params: int, param_bytes: int) -> None:
    """RunDirError when ``root`` (the checkpoints directory, created) is not writable or its disk
    has less free space than one checkpoint (:func:`checkpoint_bytes`)."""
    root = Path(root)
    probe = root / f".write-test-{os.getpid()}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        raise RunDirError(f"checkpoints cannot be written to {root} ({error.strerror or error}); "
                          f"fix its permissions or set another train.output_dir") from None
    need = checkpoint_bytes(num_params, param_bytes)
    free = shutil.disk_usage(root).free
    if free < need:
        raise RunDirError(f"{root} has {free / 2**20:.0f} MiB free but one checkpoint needs about "
                          f"{need / 2**20:.0f} MiB ({num_params:,} parameters); free some space or set "
                          f"another train.output_dir")


def command_line() -> str:
    return "expo-rl " + " ".join(sys.argv[1:]) if sys.argv else "expo-rl"


__all__ = ["LOCK_NAME", "OutputLock", "check_can_save", "checkpoint_bytes", "claim_train_dir",
           "command_line", "lock_output", "used_by_a_run"]


def is_main_process() -> bool:
    """Rank 0 of a launch (``RANK`` as set by torchrun / accelerate launch), or a single process."""
    return os.environ.get("RANK", "0") == "0"


def model_size(model: Any) -> dict[str, int]:
    """``num_params`` and ``param_bytes`` of a model, for :func:`check_can_save`."""
    params = list(model.parameters())
    return {"num_params": sum(p.numel() for p in params),
            "param_bytes": max((p.element_size() for p in params), default=4)}
