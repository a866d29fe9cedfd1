"""Non-finite guard: an optimiser update whose loss or gradient norm is not finite never reaches
the parameters, and a diverged step never produces a checkpoint.

``train.on_nonfinite``: ``stop`` (default) ends the run with :class:`NonFiniteError` after the
step's metrics are logged and before any save; ``skip`` drops the update (gradients zeroed, no
optimiser or scheduler step), logs ``optim/skipped_updates`` and goes on, and a save that falls
on a step with a skipped update is left out. Checkpoints record ``finite`` (every parameter
finite when saved) in their trainer state, and pruning keeps the newest finite one whatever
``keep_last`` says (``expo_rl.engine.checkpoint``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from expo_rl.errors import NonFiniteError

ON_NONFINITE = ("stop", "skip")
SKIPPED_KEY = "optim/skipped_updates"


def update_is_finite(accelerator: Any, losses: Iterable[float], grad_norm: float) -> bool:
    """True when ``grad_norm`` and every loss of the update are finite on every process.

    The gradient norm is already global after ``clip_grad_norm_``; the losses are per process, so
    the verdict is reduced (max of the "bad" flag) so that every process skips or steps together.
    """
    bad = not math.isfinite(grad_norm) or not all(math.isfinite(v) for v in losses)
    if getattr(accelerator, "num_processes", 1) > 1:
        flag = torch.tensor([1.0 if bad else 0.0], device=accelerator.device)
        bad = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
    return not bad


def parameters_finite(model: torch.nn.Module) -> bool:
    """True when every parameter of ``model`` is finite (one pass, no copies kept)."""
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def nonfinite_message(step: int, metrics: dict[str, Any], last_checkpoint: Any) -> str:
    """The one-line explanation of a stopped run."""
    loss_keys = [k for k in sorted(metrics) if k.endswith("/loss") or k.endswith("/objective")]
    shown = ", ".join(f"{k}={metrics[k]:.4g}" for k in ["optim/grad_norm", *loss_keys[:3]]
                      if isinstance(metrics.get(k), float))
    kept = f"the last checkpoint is {last_checkpoint}" if last_checkpoint else "no checkpoint was written"
    return (f"training diverged at step {step}: the loss or gradient norm is not finite ({shown}); "
            f"the update was not applied and nothing was saved; {kept}. Lower optim.lr, set "
            f"optim.max_grad_norm, or set train.on_nonfinite=skip to drop such updates and go on")


def check_step(step: int, metrics: dict[str, Any], policy: str, last_checkpoint: Any) -> bool:
    """After a step is logged: raise (``stop``) or return False (``skip``) when an update of the
    step was dropped as non-finite; True when the step is clean (it may be saved)."""
    if not metrics.get(SKIPPED_KEY):
        return True
    if policy == "stop":
        raise NonFiniteError(nonfinite_message(step, metrics, last_checkpoint))
    return False


__all__ = ["ON_NONFINITE", "SKIPPED_KEY", "NonFiniteError", "check_step", "nonfinite_message",
           "parameters_finite", "update_is_finite"]
