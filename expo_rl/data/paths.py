"""Where the data lives: an explicit folder, ``$EXPO_RL_DATA``, or ``../shared/data`` of a checkout.

The default walks up from this package and from the working directory and takes the first
``<ancestor>/shared/data`` that holds a ``math`` or ``gsm8k`` folder: for a checkout at
``/work/main`` that is ``/work/shared/data``, and a ``shared/`` folder inside the checkout is
found first.
"""

from __future__ import annotations

import os
from pathlib import Path

from expo_rl.data.result import DataError

DATA_ENV = "EXPO_RL_DATA"


def _looks_like_data(folder: Path) -> bool:
    return (folder / "math").is_dir() or (folder / "gsm8k").is_dir()


def _candidates() -> list[Path]:
    found: list[Path] = []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        for ancestor in (start, *start.parents):
            candidate = ancestor / "shared" / "data"
            if candidate not in found:
                found.append(candidate)
    return found


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else ``$EXPO_RL_DATA``, else the walk-up default."""
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
    candidates = _candidates()
    for candidate in candidates:
        if candidate.is_dir() and _looks_like_data(candidate):
            return candidate
    raise DataError(
        "no data folder found: pass --data-dir / data_dir=, set $" + DATA_ENV
        + ", or put the data at <checkout>/../shared/data (with math/ and gsm8k/ inside); "
        + "looked in: " + ", ".join(str(c) for c in candidates[:6]) + ", ..."
    )
