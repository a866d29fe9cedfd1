"""Where a run's scalars go besides ``metrics.jsonl``: TensorBoard, Weights & Biases, trackio.

``train.report_to`` names them (``[tensorboard, wandb, trackio]``); each backend is a small
object with ``log(step, scalars)`` and ``close()``. wandb and trackio are optional extras
(``pip install 'expo-rl[wandb]'`` / ``'expo-rl[trackio]'``); naming one that is not installed
is an error that says how to install it.

- ``tensorboard``: event files under ``<output_dir>/tensorboard`` (a resumed run purges the
  steps after its checkpoint);
- ``wandb``: a run in project ``train.project`` named after the output folder, its files under
  ``<output_dir>/wandb``; ``WANDB_MODE=offline`` keeps everything local (``wandb sync`` later);
- ``trackio``: a run in project ``train.project``, stored locally in trackio's SQLite folder
  (``$TRACKIO_DIR``, default ``~/.cache/huggingface/trackio``; ``trackio show`` opens it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

REPORT_TARGETS = ("tensorboard", "wandb", "trackio")


class Backend(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise RuntimeError(f"train.report_to names {name!r}, which is not installed: "
                           f"pip install 'expo-rl[{name}]' (or pip install {name})") from None


class TensorBoard:
    def __init__(self, out_dir: Path, resume_step: int | None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(out_dir / "tensorboard"),
                                    purge_step=resume_step + 1 if resume_step is not None else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB:
    def __init__(self, out_dir: Path, project: str, name: str, config: dict[str, Any] | None,
                 resume_step: int | None) -> None:
        wandb = _import("wandb")
        out_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, dir=str(out_dir), config=config or {},
                              resume="allow" if resume_step is not None else None)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class Trackio:
    def __init__(self, project: str, name: str, config: dict[str, Any] | None,
                 resume_step: int | None) -> None:
        self.trackio = _import("trackio")
        self.trackio.init(project=project, name=name, config=config or {},
                          resume="allow" if resume_step is not None else "never",
                          auto_log_cpu=False, auto_log_gpu=False)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.trackio.log(scalars, step=step)

    def close(self) -> None:
        self.trackio.finish()


def open_backends(report_to: Sequence[str], out_dir: str | Path, *, project: str = "expo-rl",
                  name: str | None = None, config: dict[str, Any] | None = None,
                  resume_step: int | None = None) -> list[Backend]:
    """One backend per entry of ``report_to`` (each name at most once)."""
    out_dir = Path(out_dir)
    name = name or out_dir.resolve().name
    openers: dict[str, Callable[[], Backend]] = {
        "tensorboard": lambda: TensorBoard(out_dir, resume_step),
        "wandb": lambda: WandB(out_dir, project, name, config, resume_step),
        "trackio": lambda: Trackio(project, name, config, resume_step),
    }
    unknown = [t for t in report_to if t not in openers]
    if unknown:
        raise ValueError(f"report_to: {unknown} not allowed; allowed values: {', '.join(REPORT_TARGETS)}")
    return [openers[target]() for target in dict.fromkeys(report_to)]
