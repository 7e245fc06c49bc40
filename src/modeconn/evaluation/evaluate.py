"""Loss and error of a network on a dataset."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.functional import cross_entropy

from ..data.datasets import batch_pair
from ..runtime.speed import EAGER, Speed
from .batchnorm import recompute_bn


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


@torch.no_grad()
def evaluate(model, batches, speed: Speed = EAGER) -> Metrics:
    """Mean cross-entropy and error of `model` (any x -> logits callable) on `batches`."""
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
    loss_sum: float | torch.Tensor  # tensors from the first batch on
    wrong: int | torch.Tensor
    loss_sum, wrong, count = 0.0, 0, 0
    for item in batches:  # sums stay on the data's device: one host sync at the end, not per batch
        x, y = batch_pair(item)
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
    recompute_bn(model, data.bn_batches(batch_size), speed)
    return split_metrics(model, data, batch_size, speed)
