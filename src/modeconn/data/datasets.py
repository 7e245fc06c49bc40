"""Datasets as tensors in memory (on the GPU when there is one), and batches drawn from them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ModeconnError


@dataclass
class Dataset:
    """Train and test tensors of one dataset, already normalised."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    train_transform: object = None  # applied to shuffled training batches only (augmentation)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def to(self, device) -> Dataset:
        """The same dataset with every tensor on `device`."""
        return Dataset(self.name, self.train_x.to(device), self.train_y.to(device),
                       self.test_x.to(device), self.test_y.to(device), self.num_classes, self.train_transform)

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` training and first `test` test examples (all when None)."""
        return Dataset(self.name, self.train_x[:train], self.train_y[:train], self.test_x[:test], self.test_y[:test],
                       self.num_classes, self.train_transform)

    def train_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, limit: int | None = None):
        """Batches of the training split; shuffled ones (training) are augmented, in-order ones (evaluation) not."""
        return Batches(self.train_x, self.train_y, batch_size, shuffle, seed, limit,
                       transform=self.train_transform if shuffle else None)

    def bn_batches(self, batch_size: int, seed: int = 0, limit: int | None = None):
        """Batches of the training split for BatchNorm recomputation: unaugmented, in a seeded random order that
        is the same on every iteration and device (never the file order: class-sorted files would give
        one-class batches), of `limit` examples when given (the first `limit` of that order)."""
        order = torch.randperm(len(self.train_x), generator=torch.Generator().manual_seed(seed + 10_007), device="cpu")
        return Batches(self.train_x, self.train_y, batch_size, order=order[:limit])

    def test_batches(self, batch_size: int = 1000):
        """Batches of the test split, in order."""
        return Batches(self.test_x, self.test_y, batch_size, shuffle=False)


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
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 10_007), device="cpu")[:limit]
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
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen, device="cpu").to(self.x.device)  # the same order on any device
            self.epoch += 1
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                x = self.x[idx]
                x = self.transform(x, gen) if self.transform is not None else x
                yield x, self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                yield self.x[i:i + self.batch_size], self.y[i:i + self.batch_size]


def batch_pair(item) -> tuple[torch.Tensor, torch.Tensor]:
    """The (inputs, targets) of a batch given as a tuple or list (x, y, extras...): extras, such as the indices
    some datasets add, are ignored. Raises ModeconnError (one line) for anything else: a bare tensor is never
    split into inputs and targets."""
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    got = f"a {type(item).__name__}" + (f" of {len(item)}" if isinstance(item, (tuple, list)) else "")
    raise ModeconnError(f"a batch must be a tuple or list (inputs, targets, ...), got {got}; give (x, y) pairs, "
                        "e.g. a TensorDataset(x, y) or a DataLoader over one")


def tensors_from(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack any map-style torch dataset or DataLoader of (x, y[, extras...]) items into two tensors. Raises
    ModeconnError for items that are not (x, y) pairs (a dataset of single tensors) or an empty dataset."""
    xs, ys = [], []
    for item in dataset:
        x, y = batch_pair(item)
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    if not xs:
        raise ModeconnError("the dataset holds no examples")
    batched = xs[0].dim() > 0 and ys[0].dim() > 0  # a DataLoader yields batches
    cat = torch.cat if batched else torch.stack
    return cat(xs).float(), cat(ys).long()


def from_torch(name: str, train, test, num_classes: int | None = None) -> Dataset:
    """A Dataset from any torch datasets or DataLoaders yielding (x, y)."""
    tx, ty = tensors_from(train)
    vx, vy = tensors_from(test)
    return Dataset(name, tx, ty, vx, vy, num_classes or int(max(ty.max(), vy.max())) + 1)
