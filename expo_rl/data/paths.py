"""Where the named data sets come from, in order:

1. an explicit folder (``data_dir=`` / ``--data-dir`` / ``data.data_dir``), else ``$EXPO_RL_DATA``:
   ``<folder>/<file>`` or ``<folder>/<file>.gz`` when it is there;
2. the copy the package carries, ``expo_rl/assets/data/<file>.gz`` (gzip-compressed JSONL; its
   decompressed SHA-256 is checked against ``SHA256SUMS`` once per process);
3. the Hugging Face hub through ``datasets`` (online only), for the sets published there in the
   same shape (:data:`HUB_SETS`).

Nothing outside the installed package is needed: a fresh clone or a wheel has the data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

from expo_rl.data.result import DataError

DATA_ENV = "EXPO_RL_DATA"
PACKAGED_DATA_DIR = Path(__file__).resolve().parent.parent / "assets" / "data"
CHECKSUMS = PACKAGED_DATA_DIR / "SHA256SUMS"

HUB_SETS: dict[str, str] = {
    # built-in name -> the part after "hf:" (same fields as the shipped file)
    "math500": "HuggingFaceH4/MATH-500:test",
    "gsm8k_test": "openai/gsm8k:main:test",
    "gsm8k_train": "openai/gsm8k:main:train",
}
_VERIFIED: set[Path] = set()


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$EXPO_RL_DATA``, else the packaged copy
    (which holds ``<file>.gz`` files)."""
    user = user_data_dir(data_dir)
    return PACKAGED_DATA_DIR if user is None else user


def user_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """``data_dir`` or ``$EXPO_RL_DATA`` (an error when the folder does not exist), else None."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataError(f"data folder {str(path)!r} (from the data_dir argument / --data-dir) "
                            "does not exist")
        return path
    env = os.environ.get(DATA_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise DataError(f"data folder {env!r} (from ${DATA_ENV}) does not exist")
        return path
    return None


def find_in(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` or its ``.gz`` twin, whichever exists first."""
    for candidate in (folder / relative, folder / f"{relative}.gz"):
        if candidate.is_file():
            return candidate
    return None


def packaged_checksums() -> dict[str, str]:
    """``{relative .jsonl path: sha256 of the decompressed file}`` from ``SHA256SUMS``."""
    if not CHECKSUMS.is_file():
        return {}
    pairs = (line.split(None, 1) for line in CHECKSUMS.read_text().splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def verify_packaged(path: Path, relative: str) -> None:
    """Check a packaged ``.gz`` file against ``SHA256SUMS`` (once per process per file)."""
    if path in _VERIFIED:
        return
    expected = packaged_checksums().get(relative)
    if expected is None:
        raise DataError(f"{CHECKSUMS} has no checksum for {relative!r}")
    with gzip.open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read()).hexdigest()
    if digest != expected:
        raise DataError(f"packaged data {path} is corrupt: sha256 {digest} != {expected} "
                        f"(from {CHECKSUMS}); reinstall expo-rl or pass --data-dir")
    _VERIFIED.add(path)


def builtin_file(relative: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The file of a named data set: the user's folder first, then the packaged copy (checked);
    None when neither has it (the caller then tries the hub)."""
    user = user_data_dir(data_dir)
    if user is not None:
        found = find_in(user, relative)
        if found is not None:
            return found
    packaged = PACKAGED_DATA_DIR / f"{relative}.gz"
    if packaged.is_file():
        verify_packaged(packaged, relative)
        return packaged
    return None
