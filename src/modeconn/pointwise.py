"""Metrics of one weight vector: BatchNorm recomputed for it, then train and test loss and error."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .data import Dataset
from .evaluate import evaluate, recompute_bn
from .flat import load_parameters_vector

METRICS = ("train_loss", "train_err", "test_loss", "test_err", "train_objective")


@dataclass
class EvalSettings:
    """How a point is measured: batch size, BN subset, train subset, and the weight decay trained with."""

    wd: float = 0.0
    batch_size: int = 1000
    bn_samples: int | None = None     # None: the exact full pass over the training data
    train_samples: int | None = None  # None: train metrics on the whole training split
    seed: int = 0

    def bn_batches(self, data: Dataset):
        return data.train_batches(self.batch_size, shuffle=False, seed=self.seed, limit=self.bn_samples)

    def train_batches(self, data: Dataset):
        return data.train_batches(self.batch_size, shuffle=False, seed=self.seed + 1, limit=self.train_samples)


class PointEvaluator:
    """Measures many weight vectors with one working network (reused: nothing rebuilt per point)."""

    def __init__(self, template: nn.Module, data: Dataset, settings: EvalSettings):
        self.net, self.data, self.settings = template, data, settings
        self.bn_batches = settings.bn_batches(data)
        self.train_batches = settings.train_batches(data)
        self.test_batches = data.test_batches(settings.batch_size)
        self.bn_passes = 0

    @torch.no_grad()
    def __call__(self, weights: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None) -> dict[str, float]:
        """Metrics of the network with flat parameters `weights` (buffers optional: BN is recomputed)."""
        load_parameters_vector(self.net, weights)
        if buffers:
            for name, buf in self.net.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        if recompute_bn(self.net, self.bn_batches):
            self.bn_passes += 1
        tr = evaluate(self.net, self.train_batches)
        te = evaluate(self.net, self.test_batches)
        l2 = 0.5 * self.settings.wd * float(weights.double().pow(2).sum())
        return {"train_loss": tr["loss"], "train_err": tr["err"], "test_loss": te["loss"], "test_err": te["err"],
                "train_objective": tr["loss"] + l2}
