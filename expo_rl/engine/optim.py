"""Optimiser and learning-rate schedules (SPEC section 5: AdamW, cosine or constant, warm-up ratio).

The schedule multiplies the peak learning rate by

    warm-up   (u < W):  (u + 1) / W
    constant  (u >= W): 1
    cosine    (u >= W): m + (1 - m) * 0.5 * (1 + cos(pi * (u - W) / (U - W)))

where ``u`` counts optimiser updates from 0, ``U`` is the total number of updates,
``W = ceil(warmup_ratio * U)`` and ``m = min_lr_ratio``. Warm-up starts above zero so the first
update is never wasted. Plain values in, torch objects out: no config object is read here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR

SCHEDULES = ("cosine", "constant")


def build_optimizer(
    parameters: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norm weights (1-d tensors) get no decay."""
    params = [p for p in parameters if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas, eps=eps)


def lr_multiplier(update: int, *, total_updates: int, schedule: str, warmup_ratio: float = 0.0,
                  min_lr_ratio: float = 0.0) -> float:
    """The factor applied to the peak learning rate at update ``update`` (0-based); see module doc."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; allowed: {', '.join(SCHEDULES)}")
    warmup = math.ceil(warmup_ratio * total_updates)
    if update < warmup:
        return (update + 1) / warmup
    if schedule == "constant":
        return 1.0
    span = max(1, total_updates - warmup)
    progress = min(1.0, (update - warmup) / span)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, *, total_updates: int, schedule: str,
                    warmup_ratio: float = 0.0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """A LambdaLR stepping once per optimiser update with :func:`lr_multiplier`."""
    lr_multiplier(0, total_updates=total_updates, schedule=schedule)  # validate early

    def factor(update: int) -> float:
        return lr_multiplier(update, total_updates=total_updates, schedule=schedule,
                             warmup_ratio=warmup_ratio, min_lr_ratio=min_lr_ratio)

    return LambdaLR(optimizer, factor)
