"""SPRO (Benton et al. 2021): grow a low-loss simplex around a trained network, one vertex at a time."""
from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..core.curve import Curve
from ..core.simplex import Simplex
from ..data.datasets import DataSource
from ..errors import ModeconnError
from ..runtime.speed import EAGER, Speed
from .schedule import cosine_lr
from .train import SPRO_VOLUME_WEIGHT, train_simplex

EPOCHS_PER_VERTEX, SPRO_LR = 10, 0.01  # Benton et al.'s defaults for each new vertex (cosine schedule)


def train_vertex(simplex: Simplex, data: DataSource, cfg: TrainConfig, volume_weight: float = SPRO_VOLUME_WEIGHT, *,
                 checkpoint: Path | None = None, resume: bool = False, settings: dict | None = None,
                 progress: bool = True, desc: str = "vertex", speed: Speed = EAGER):
    """One SPRO stage (Benton et al. 2021): the free vertex trained with the others fixed, cosine schedule
    from `cfg.lr`. Keywords as `train_network`'s; returns (losses per epoch, optimizer)."""
    return train_simplex(simplex, data, cfg, volume_weight, lr_at=lambda p: cosine_lr(cfg.lr, p),
                         checkpoint=checkpoint, resume=resume, settings=settings, progress=progress, desc=desc,
                         speed=speed)


def first_stage(modes: list[nn.Module]) -> Simplex:
    """SPRO's first stage around trained networks: one free vertex at their mean, joined to each
    network in its own face (one network: an edge from it; several: Benton et al.'s
    mode-connecting complex, whose first stage is a polygonal chain through the new vertex)."""
    with torch.no_grad():
        mean = copy.deepcopy(modes[0]) if len(modes) == 1 else Simplex(modes).module_at([1 / len(modes)] * len(modes))
    n = len(modes)
    return Simplex([*modes, mean], [False] * n + [True], [[i, n] for i in range(n)])


def check_extendable(kind: str, bends: int) -> None:
    """Refuse a curve whose bends lie off it: only a one-bend polygonal chain is a complex of its segments."""
    if kind != "polychain" or bends != 1:
        raise ModeconnError(f"a {kind} curve of {bends} bend(s) cannot be extended into a simplex: only a one-bend "
                            "polychain curve can (its bend lies on the curve); "
                            "connect with --curve polychain --bends 1")


def curve_complex(curve: Curve) -> Simplex:
    """A one-bend polygonal-chain curve as a complex of its two segments (start-bend, bend-end), all
    fixed: `grown()` of it adds a vertex that both segments share."""
    check_extendable(curve.kind, curve.num_points - 2)
    with torch.no_grad():
        return Simplex([curve.control_model(k) for k in range(3)], faces=[[0, 1], [1, 2]])


def grow_simplex(start: Simplex, data: DataSource, cfg: TrainConfig, vertices: int,
                 volume_weight: float = SPRO_VOLUME_WEIGHT, stage=None, *, progress: bool = True,
                 speed: Speed = EAGER) -> Simplex:
    """Train `start`'s free vertex (stage 1), then add and train `vertices - 1` more, one at a time:
    each starts at the centroid of the ones before, is trained for `cfg.epochs` with them fixed,
    then fixed in turn. `start` is `first_stage(networks)` or `curve_complex(curve).grown()`.

    `stage(simplex, k)` trains vertex k (default: `train_vertex` with `progress` and `speed`); the
    command passes its own, which keeps each finished stage for a resume.
    """
    stage = stage or (lambda shape, k: train_vertex(shape, data, cfg, volume_weight, desc=f"vertex {k}/{vertices}",
                                                    progress=progress, speed=speed))
    simplex = start
    for k in range(1, vertices + 1):
        simplex = simplex.grown() if k > 1 else simplex
        stage(simplex, k)
    return simplex
