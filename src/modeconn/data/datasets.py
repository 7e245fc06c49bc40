"""Datasets as tensors in memory (on the GPU when there is one), and batches drawn from them."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch

from ..errors import ModeconnError
from ..tasks import CLASSIFICATION, Task, check_task
from .order import epoch_generator, epoch_shuffle, fixed_order
from .stream import StreamedData


@dataclass
class Dataset:
    """Train and test tensors of one dataset, already normalised, and the task the model is asked to do on them.

    num_classes: the width of the model's output (the number of classes; for regression, of target values per
    example). task: `classification` by default; every analysis reads it from here.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    train_transform: object = None  # applied to shuffled training batches only (augmentation)
    task: Task = field(default=CLASSIFICATION)

    def __post_init__(self):
        """Refuse, in one line, data no analysis could measure: unequal lengths, non-finite inputs, targets the
        task cannot read (float labels for classification, labels out of range, integer regression targets)."""
        check_task(self.task)
        for split, x, y in (("training", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if len(x) != len(y):
                raise ModeconnError(f"the {split} split has {len(x)} inputs and {len(y)} targets; give one target "
                                    "per input")
            if len(x) == 0:
                raise ModeconnError(f"the {split} split holds no examples; give it at least one")
            if x.device.type == "meta":  # shapes only: nothing to read
                continue
            if x.is_floating_point() and not bool(torch.isfinite(x).all()):
                raise ModeconnError(f"the {split} inputs hold NaN or infinite values; drop or fix those examples")
            self.task.check_targets(y, self.num_classes, split)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def device(self) -> torch.device:
        """Where the tensors are (and so every batch)."""
        return self.train_x.device

    @property
    def train_size(self) -> int:
        """The number of training examples."""
        return len(self.train_x)

    def example_input(self, n: int = 2) -> torch.Tensor:
        """The first `n` training inputs (for shape checks and tracing)."""
        return self.train_x[:n]

    def to(self, device) -> Dataset:
        """The same dataset with every tensor on `device`."""
        return self._derived(train_x=self.train_x.to(device), train_y=self.train_y.to(device),
                             test_x=self.test_x.to(device), test_y=self.test_y.to(device))

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` training and first `test` test examples (all when None)."""
        return self._derived(train_x=self.train_x[:train], train_y=self.train_y[:train], test_x=self.test_x[:test],
                             test_y=self.test_y[:test])

    def _derived(self, **tensors) -> Dataset:
        """A copy holding a device move or a prefix of tensors this dataset already checked. It skips
        `__post_init__` on purpose: its checks read every value to the host, which training on a GPU must not pay
        once more per call (the training loop's host reads are counted by tests)."""
        derived = copy.copy(self)
        derived.__dict__.update(tensors)
        return derived

    def with_task(self, task: Task) -> Dataset:
        """The same tensors, measured by another task (e.g. `regression()`)."""
        return replace(self, task=check_task(task))

    def train_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, limit: int | None = None):
        """Batches of the training split; shuffled ones (training) are augmented, in-order ones (evaluation) not."""
        return Batches(self.train_x, self.train_y, batch_size, shuffle, seed, limit,
                       transform=self.train_transform if shuffle else None)

    def bn_batches(self, batch_size: int, seed: int = 0, limit: int | None = None):
        """Batches of the training split for BatchNorm recomputation: unaugmented, in a seeded random order that
        is the same on every iteration and device (never the file order: class-sorted files would give
        one-class batches), of `limit` examples when given (the first `limit` of that order)."""
        return Batches(self.train_x, self.train_y, batch_size, order=fixed_order(len(self.train_x), seed)[:limit])

    def test_batches(self, batch_size: int = 1000):
        """Batches of the test split, in order."""
        return Batches(self.test_x, self.test_y, batch_size, shuffle=False)


# What every analysis takes: data in memory, or read batch by batch from DataLoaders (modeconn.data.stream); both
# answer train_batches, bn_batches, test_batches, input_shape, num_classes, task, device, example_input.
DataSource = Dataset | StreamedData


class Batches:
    """An iterable of (x, y) minibatches over in-memory tensors; iterating again reshuffles.

    Epoch e shuffles with seed + e, so a run resumed at epoch e sees the same batches.
    `limit` keeps a fixed random subset of that many examples (drawn with `seed`). `order` (indices, on the
    CPU) visits those examples in that fixed order on every iteration instead (no shuffle, no limit).
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = False, seed: int = 0, limit: int | None = None,
                 transform=None, order: torch.Tensor | None = None):
        if batch_size < 1:
            raise ModeconnError(f"batch size must be >= 1, got {batch_size}")
        if limit is not None and limit < len(x):
            keep = fixed_order(len(x), seed)[:limit]
            x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.transform = transform
        self.order = None if order is None else order.to(x.device)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.x) if self.order is None else len(self.order)
        return (n + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's shuffle the next iteration uses (for resumed runs)."""
        self.epoch = epoch

    def __iter__(self):
        n = len(self.x)
        if self.order is not None:
            for i in range(0, len(self.order), self.batch_size):
                idx = self.order[i:i + self.batch_size]
                yield self.x[idx], self.y[idx]
        elif self.shuffle:
            gen = epoch_generator(self.seed, self.epoch)
            order = epoch_shuffle(n, gen).to(self.x.device)
            self.epoch += 1
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                x = self.x[idx]
                x = self.transform(x, gen) if self.transform is not None else x
                yield x, self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


def tensors_from(dataset, task: Task = CLASSIFICATION, what: str = "the dataset") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack any map-style torch dataset, DataLoader or iterable of batches into (inputs, targets) tensors, each
    item read by `task.split`. Integer targets become int64 (class indices), floating ones float32 (regression).
    Raises ModeconnError for items the task cannot read (a dataset of single tensors) or an empty dataset."""
    xs, ys = [], []
    for item in dataset:
        x, y = task.split(item)
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    if not xs:
        raise ModeconnError(f"{what} holds no examples; give it at least one")
    if isinstance(dataset, torch.utils.data.DataLoader):
        batched = dataset.batch_sampler is not None  # batch_size=None yields single examples
    elif isinstance(dataset, torch.utils.data.Dataset):
        batched = False
    else:  # an iterable of batches, or of examples: batches have a leading dimension on both
        batched = xs[0].dim() > 0 and ys[0].dim() > 0
    cat = torch.cat if batched else torch.stack
    x, y = cat(xs).float(), cat(ys)
    return x, (y.float() if y.is_floating_point() else y.long())


def from_torch(name: str, train, test, num_classes: int | None = None, task: Task = CLASSIFICATION) -> Dataset:
    """A Dataset held in memory from any torch datasets, DataLoaders or iterables of batches, read by `task`.

    num_classes: the model's output width; by default the largest class index + 1 for integer targets, the
    number of target values per example for floating-point ones. Raises ModeconnError as `tensors_from`.
    """
    tx, ty = tensors_from(train, task, "the training split")
    vx, vy = tensors_from(test, task, "the test split")
    if num_classes is None:
        num_classes = (int(ty[0].numel()) if ty.is_floating_point() else int(max(ty.max(), vy.max())) + 1)
    return Dataset(name, tx, ty, vx, vy, num_classes, task=task)
