"""SPRO (Benton et al. 2021): grow a low-loss simplex around a trained network, one vertex at a time."""
from __future__ import annotations

import copy

from torch import nn

from ..core.simplex import Simplex
from ..data.datasets import Dataset
from .schedule import cosine_lr
from .train import SPRO_VOLUME_WEIGHT, TrainConfig, train_simplex


def grow_simplex(network: nn.Module, data: Dataset, cfg: TrainConfig, vertices: int,
                 volume_weight: float = SPRO_VOLUME_WEIGHT, progress: bool = True, **kwargs) -> Simplex:
    """A simplex of 1 + `vertices` vertices around `network` (fixed): each new vertex starts at the
    centroid of the ones before, is trained for `cfg.epochs` with them fixed (cosine schedule from
    `cfg.lr`), then fixed in turn."""
    simplex = Simplex([network, copy.deepcopy(network)], free=[False, True])
    for k in range(vertices):
        if k:
            simplex = simplex.grown()
        train_simplex(simplex, data, cfg, volume_weight, lr_at=lambda p: cosine_lr(cfg.lr, p), progress=progress,
                      desc=f"vertex {k + 1}/{vertices}", **kwargs)
    return simplex
