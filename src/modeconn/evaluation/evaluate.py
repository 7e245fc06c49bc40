"""Loss and error of a network on a dataset, and exact BatchNorm statistics for any weights."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import cross_entropy
from torch.nn.modules.batchnorm import _BatchNorm

from ..runtime.speed import EAGER, Speed


@dataclass(frozen=True)
class Metrics:
    """Mean cross-entropy (`loss`) and error as a fraction (`err`) on one set of examples."""

    loss: float
    err: float


@dataclass(frozen=True)
class SplitMetrics:
    """Metrics on the training split (without augmentation) and the test split.

    `train_objective` is train loss + 0.5 * wd * ||w||^2, the objective training minimised,
    where the weight decay is known; plain cross-entropy is never mixed with it.
    """

    train: Metrics
    test: Metrics
    train_objective: float | None = None

    def to_dict(self) -> dict[str, float]:
        """The flat keys of run.json and the evaluation files: train_loss, train_err, test_loss,
        test_err[, train_objective]."""
        row = {"train_loss": self.train.loss, "train_err": self.train.err,
               "test_loss": self.test.loss, "test_err": self.test.err}
        if self.train_objective is not None:
            row["train_objective"] = self.train_objective
        return row


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the module has BatchNorm layers that track running statistics."""
    return bool(batchnorm_layers(module))


def batchnorm_note(module: nn.Module) -> str:
    """What a result file says of BatchNorm: recomputed at every point it measured, or `none` to recompute."""
    return "statistics recomputed at every point" if has_batchnorm(module) else "none"


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that track running statistics."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recompute_bn(model: nn.Module, batches, speed: Speed = EAGER) -> bool:
    """Reset BN running statistics and recompute them as an exact cumulative average over `batches`.

    The same statistics as `torch.optim.swa_utils.update_bn`, without its host sync: with
    momentum=None, BatchNorm reads `float(num_batches_tracked)` in every layer on every batch.
    Setting momentum to 1/(k+1) on batch k gives the same running average with no read-back.
    Returns False, doing no pass, for a network without BatchNorm.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return False
    saved = [(m, m.momentum) for m in layers]
    was_training = model.training
    for m in layers:
        m.reset_running_stats()
    model.train()
    try:
        with speed.autocast(next(model.parameters()).device):
            for k, (x, _) in enumerate(batches):
                for m in layers:
                    m.momentum = 1.0 / (k + 1)
                model(speed.input(x))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return True


@torch.no_grad()
def evaluate(model, batches, speed: Speed = EAGER) -> Metrics:
    """Mean cross-entropy and error of `model` (any x -> logits callable) on `batches`."""
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
    loss_sum: float | torch.Tensor  # tensors from the first batch on
    wrong: int | torch.Tensor
    loss_sum, wrong, count = 0.0, 0, 0
    for x, y in batches:  # sums stay on the data's device: one host sync at the end, not per batch
        with speed.autocast(x.device):
            logits = model(speed.input(x))
        loss_sum = loss_sum + cross_entropy(logits.float(), y, reduction="sum").double()
        wrong = wrong + (logits.argmax(1) != y).sum()
        count += len(y)
    if isinstance(model, nn.Module):
        model.train(was_training)
    return Metrics(loss=float(loss_sum) / count, err=float(wrong) / count)


def split_metrics(model, data, batch_size: int = 500, speed: Speed = EAGER) -> SplitMetrics:
    """Train (in order, unaugmented) and test metrics of `model` on a Dataset."""
    return SplitMetrics(train=evaluate(model, data.train_batches(batch_size, shuffle=False), speed),
                        test=evaluate(model, data.test_batches(batch_size), speed))


def metrics_with_bn(model, data, batch_size: int = 500, speed: Speed = EAGER) -> SplitMetrics:
    """`split_metrics` after recomputing `model`'s BN statistics (in place) over the training set:
    how a point of a curve or simplex is measured."""
    recompute_bn(model, data.train_batches(batch_size, shuffle=False), speed)
    return split_metrics(model, data, batch_size, speed)
