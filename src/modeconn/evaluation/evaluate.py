"""The metrics of a network on a dataset, as its task defines them (loss and error for classification)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModeconnError
from ..runtime.speed import EAGER, Speed
from ..tasks import CLASSIFICATION, Task, check_task
from .batchnorm import recompute_bn


class NamedMetrics(Mapping):
    """Read-only metric values by name, in order; read as a mapping (`m["err"]`) or by attribute (`m.err`)."""

    _values: dict[str, float]

    def __init__(self, **values: float):
        object.__setattr__(self, "_values", dict(values))

    def __getitem__(self, name: str) -> float:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> float:
        values = self.__dict__.get("_values", {})
        if name in values:
            return values[name]
        raise AttributeError(f"no metric {name!r} (these: {', '.join(values)})")

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} are read-only")

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and self._values == other._values

    def __hash__(self) -> int:
        return hash(tuple(self._values.items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


class Metrics(NamedMetrics):
    """The task's metrics on one set of examples, by name, in the task's order; `loss` is always first.

    Read as a mapping (`m["err"]`) or by attribute (`m.loss`, `m.err` for classification, `m.mae` for regression):
    classification's are mean cross-entropy (`loss`, nats) and error as a fraction (`err`).
    """

    def __init__(self, **values: float):
        if "loss" not in values:
            raise ModeconnError(f"metrics need a loss, got {', '.join(values) or 'none'}")
        super().__init__(**values)


@dataclass(frozen=True)
class SplitMetrics:
    """Metrics on the training split (without augmentation) and the test split.

    `train_objective` is train loss + 0.5 * wd * ||w||^2, the objective training minimised,
    where the weight decay is known; the plain loss is never mixed with it.
    """

    train: Metrics
    test: Metrics
    train_objective: float | None = None

    def to_dict(self) -> dict[str, float]:
        """The flat keys of run.json and the evaluation files: train_<metric>, test_<metric> for each of the task's
        metrics (train_loss, train_err, test_loss, test_err for classification)[, train_objective]."""
        row = {**{f"train_{k}": v for k, v in self.train.items()}, **{f"test_{k}": v for k, v in self.test.items()}}
        if self.train_objective is not None:
            row["train_objective"] = self.train_objective
        return row


@torch.no_grad()
def evaluate(model, batches, speed: Speed = EAGER, task: Task = CLASSIFICATION) -> Metrics:
    """The task's metrics of `model` (any inputs -> outputs callable, run in eval mode) on `batches` (read by
    `task.split`), reduced from per-batch sums with one host read (see modeconn.tasks). Raises ModeconnError
    for a batch the task cannot read, or no batches."""
    check_task(task)
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
    total: torch.Tensor | None = None
    count: torch.Tensor | float = 0.0
    for item in batches:  # sums stay on the data's device: one host sync at the end, not per batch
        x, y = task.split(item)
        with speed.autocast(x.device):
            outputs = model(speed.input(x))
        sums, n = task.measure(outputs, y)
        total = sums if total is None else total + sums
        count = count + n
    if isinstance(model, nn.Module):
        model.train(was_training)
    if total is None or not isinstance(count, torch.Tensor):
        raise ModeconnError("there are no batches to evaluate on")
    return Metrics(**task.reduce(total, count))


def split_metrics(model, data, batch_size: int = 500, speed: Speed = EAGER) -> SplitMetrics:
    """Train (in order, unaugmented) and test metrics of `model` on a Dataset, by its task."""
    return SplitMetrics(train=evaluate(model, data.train_batches(batch_size, shuffle=False), speed, data.task),
                        test=evaluate(model, data.test_batches(batch_size), speed, data.task))


def metrics_with_bn(model, data, batch_size: int = 500, speed: Speed = EAGER) -> SplitMetrics:
    """`split_metrics` after recomputing `model`'s BN statistics (in place) over the training set:
    how a point of a curve or simplex is measured."""
    recompute_bn(model, data.bn_batches(batch_size), speed, data.task)
    return split_metrics(model, data, batch_size, speed)
