"""Datasets as tensors in memory (on the GPU when there is one), and batches drawn from them."""
from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import speed
from .errors import ModeconnError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


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

    def to(self, device) -> "Dataset":
        """The same dataset with every tensor on `device`."""
        return Dataset(self.name, self.train_x.to(device), self.train_y.to(device),
                       self.test_x.to(device), self.test_y.to(device), self.num_classes, self.train_transform)

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """The first `train` training and first `test` test examples (all when None)."""
        return Dataset(self.name, self.train_x[:train], self.train_y[:train], self.test_x[:test], self.test_y[:test],
                       self.num_classes, self.train_transform)

    def train_batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, limit: int | None = None):
        """Batches of the training split; shuffled ones (training) are augmented, in-order ones (evaluation) not."""
        return Batches(self.train_x, self.train_y, batch_size, shuffle, seed, limit,
                       transform=self.train_transform if shuffle else None)

    def test_batches(self, batch_size: int = 1000):
        """Batches of the test split, in order."""
        return Batches(self.test_x, self.test_y, batch_size, shuffle=False)


class Batches:
    """An iterable of (x, y) minibatches over in-memory tensors; iterating again reshuffles.

    Epoch e shuffles with seed + e, so a run resumed at epoch e sees the same batches.
    `limit` keeps a fixed random subset of that many examples (drawn with `seed`).
    """

    def __init__(self, x, y, batch_size: int, shuffle: bool = False, seed: int = 0, limit: int | None = None,
                 transform=None):
        if batch_size < 1:
            raise ModeconnError(f"batch size must be >= 1, got {batch_size}")
        if limit is not None and limit < len(x):
            keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 10_007))[:limit]
            x, y = x[keep.to(x.device)], y[keep.to(y.device)]
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.transform = transform
        self.epoch = 0

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's shuffle the next iteration uses (for resumed runs)."""
        self.epoch = epoch

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=gen).to(self.x.device)
            self.epoch += 1
            for i in range(0, n, self.batch_size):
                idx = order[i:i + self.batch_size]
                x = self.x[idx]
                x = self.transform(x, gen) if self.transform is not None else x
                yield speed.prepare_input(x), self.y[idx]
        else:
            for i in range(0, n, self.batch_size):
                yield speed.prepare_input(self.x[i:i + self.batch_size]), self.y[i:i + self.batch_size]


def tensors_from(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack any map-style torch dataset or DataLoader of (x, y) pairs into two tensors."""
    xs, ys = [], []
    for item in dataset:
        x, y = item[0], item[1]
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    batched = xs[0].dim() > 0 and ys[0].dim() > 0  # a DataLoader yields batches
    cat = torch.cat if batched else torch.stack
    return cat(xs).float(), cat(ys).long()


def from_torch(name: str, train, test, num_classes: int | None = None) -> Dataset:
    """A Dataset from any torch datasets or DataLoaders yielding (x, y)."""
    tx, ty = tensors_from(train)
    vx, vy = tensors_from(test)
    return Dataset(name, tx, ty, vx, vy, num_classes or int(max(ty.max(), vy.max())) + 1)


@functools.lru_cache(maxsize=2)
def _mnist1d_arrays(seed: int):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    d = make_dataset(args)  # generated locally: the package's download path is never used
    return d["x"], d["y"], d["x_test"], d["y_test"]


def load_mnist1d(seed: int = 42) -> Dataset:
    """MNIST-1D, generated with the package's standard settings (4000 train / 1000 test)."""
    x, y, xt, yt = _mnist1d_arrays(seed)
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    g = lambda a: torch.tensor(np.asarray(a), dtype=torch.long)  # noqa: E731
    return Dataset("mnist1d", f(x), g(y), f(xt), g(yt), 10)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array, refusing a truncated one."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ModeconnError(f"cannot read {path}: {exc}; reinstall the dataset files") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ModeconnError(f"{path} is not an IDX file of unsigned bytes; reinstall the dataset files")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    start, count = 4 + 4 * ndim, int(np.prod(dims))
    if len(raw) - start != count:
        raise ModeconnError(f"{path} is truncated or corrupt ({len(raw) - start} bytes of data, "
                            f"expected {count}); reinstall the dataset files")
    return np.frombuffer(raw, dtype=np.uint8, offset=start).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).exists():
            return folder / name
    raise ModeconnError(f"{folder} has no {stem}[.gz]: point --data-dir at a Fashion-MNIST folder "
                        "(on Debian: apt-get install dataset-fashion-mnist)")


FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from its IDX files, as (N, 1, 28, 28) normalised tensors."""
    folder = Path(data_dir or FASHION_MNIST_DIR)
    if not folder.is_dir():
        raise ModeconnError(f"no Fashion-MNIST folder at {folder}: install it with "
                            "`apt-get install dataset-fashion-mnist` or pass --data-dir")
    parts = [_read_idx(_find_idx(folder, s)) for s in (
        "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    img = lambda a: ((torch.from_numpy(a.copy()).float() / 255 - FASHION_MEAN) / FASHION_STD).unsqueeze(1)  # noqa: E731
    lab = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return Dataset("fashion-mnist", img(parts[0]), lab(parts[1]), img(parts[2]), lab(parts[3]), 10)


def load_fashion_mnist_32(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST padded to 32x32 with the paper's crop-and-flip augmentation: CIFAR-sized inputs
    for VGG/PreResNet, the scaled-down stand-in for the paper's CIFAR experiments."""
    from .cifar import CropFlip

    d = load_fashion_mnist(data_dir)
    background = float((torch.zeros(1) - FASHION_MEAN) / FASHION_STD)  # a black pixel, normalised as the images
    pad = lambda x: torch.nn.functional.pad(x, (2, 2, 2, 2), value=background)  # noqa: E731
    return Dataset("fashion-mnist-32", pad(d.train_x), d.train_y, pad(d.test_x), d.test_y, 10,
                   train_transform=CropFlip(pad_value=torch.tensor([background])))


def _cifar(name):
    def load(data_dir):
        from .cifar import load_cifar

        return load_cifar(name, data_dir)
    return load


LOADERS = {"mnist1d": lambda data_dir: load_mnist1d(), "fashion-mnist": load_fashion_mnist,
           "fashion-mnist-32": load_fashion_mnist_32,
           "cifar10": _cifar("cifar10"), "cifar100": _cifar("cifar100")}


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a dataset by name: 'mnist1d' (generated), 'fashion-mnist'/'fashion-mnist-32' (IDX files), 'cifar10'/'cifar100'."""
    if name not in LOADERS:
        raise ModeconnError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}")
    return LOADERS[name](data_dir)
