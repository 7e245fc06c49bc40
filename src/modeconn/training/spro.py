"""SPRO (Benton et al. 2021): grow a low-loss simplex around a trained network, one vertex at a time."""
from __future__ import annotations

import copy

from torch import nn

from ..core.simplex import Simplex
from ..data.datasets import Dataset
from .schedule import cosine_lr
from .train import SPRO_VOLUME_WEIGHT, TrainConfig, train_simplex

EPOCHS_PER_VERTEX, SPRO_LR = 10, 0.01  # Benton et al.'s defaults for each new vertex (cosine schedule)


def train_vertex(simplex: Simplex, data: Dataset, cfg: TrainConfig, volume_weight: float = SPRO_VOLUME_WEIGHT,
                 **kwargs):
    """One SPRO stage: the free vertex trained with the others fixed, cosine schedule from `cfg.lr`."""
    return train_simplex(simplex, data, cfg, volume_weight, lr_at=lambda p: cosine_lr(cfg.lr, p), **kwargs)


def grow_simplex(network: nn.Module, data: Dataset, cfg: TrainConfig, vertices: int,
                 volume_weight: float = SPRO_VOLUME_WEIGHT, stage=None, **kwargs) -> Simplex:
    """A simplex of 1 + `vertices` vertices around `network` (fixed): each new vertex starts at the
    centroid of the ones before, is trained for `cfg.epochs` with them fixed, then fixed in turn.

    `stage(simplex, k)` trains vertex k (default: `train_vertex` with `kwargs`); the command passes
    its own, which keeps each finished stage for a resume.
    """
    stage = stage or (lambda shape, k: train_vertex(shape, data, cfg, volume_weight, desc=f"vertex {k}/{vertices}",
                                                    **kwargs))
    simplex = Simplex([network, copy.deepcopy(network)], free=[False, True])
    for k in range(1, vertices + 1):
        simplex = simplex.grown() if k > 1 else simplex
        stage(simplex, k)
    return simplex
