"""Learning-rate schedules: the paper's step-down schedule, cosine annealing (with or without a warmup) and FGE's
triangular cycle."""
from __future__ import annotations

import math
from collections.abc import Callable

from ..config import TrainConfig
from ..errors import ModeconnError, param


def paper_lr(base_lr: float, progress: float) -> float:
    """Constant for the first 50% of training, linear down to 1% at 90%, then constant."""
    if progress <= 0.5:
        factor = 1.0
    elif progress <= 0.9:
        factor = 1.0 - 0.99 * (progress - 0.5) / 0.4
    else:
        factor = 0.01
    return base_lr * factor


def cosine_lr(base_lr: float, progress: float) -> float:
    """Cosine annealing from base_lr to 0 (Benton et al.'s schedule for each simplex vertex)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine_lr(base_lr: float, progress: float, warmup: float) -> float:
    """Linear warmup from 0 to base_lr over the first `warmup` fraction of training, then cosine annealing to 0
    (transformers' get_cosine_schedule_with_warmup, with progress in place of steps)."""
    if progress < warmup:
        return base_lr * progress / warmup
    return cosine_lr(base_lr, (progress - warmup) / (1.0 - warmup))


def schedule_of(cfg: TrainConfig) -> Callable[[float], float]:
    """The learning rate at each point of training (progress in [0, 1]) that `cfg.schedule` names."""
    if cfg.schedule == "cosine":
        return lambda p: warmup_cosine_lr(cfg.lr, p, cfg.warmup)
    return lambda p: paper_lr(cfg.lr, p)


def fge_lr(lr1: float, lr2: float, position: float) -> float:
    """Triangular cycle: lr1 at the cycle's start, lr2 at its midpoint, back to lr1 at its end."""
    t = position % 1.0
    if t < 0.5:
        return (1 - 2 * t) * lr1 + 2 * t * lr2
    return (2 * t - 1) * lr1 + (2 - 2 * t) * lr2


def check_cycle(cycle: int) -> None:
    """FGE cycles must be an even number of epochs, or snapshots land between learning rates."""
    if cycle < 2 or cycle % 2:
        raise ModeconnError(f"{param('cycle')} must be an even number of epochs >= 2, got {cycle}: the snapshot is "
                            "taken at the cycle's midpoint, which for an odd cycle falls mid-epoch at the wrong lr")
