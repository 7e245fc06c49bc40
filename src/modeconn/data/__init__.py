"""Datasets as tensors in memory, by name; nothing is downloaded."""
from __future__ import annotations

from ..errors import ModeconnError, param
from .datasets import Batches, Dataset, from_torch, tensors_from
from .fashion import FASHION_MNIST_DIR, load_fashion_mnist, load_fashion_mnist_32
from .mnist1d import load_mnist1d


def _cifar(name):
    def load(data_dir):
        from .cifar import load_cifar

        return load_cifar(name, data_dir)
    return load


LOADERS = {"mnist1d": lambda data_dir: load_mnist1d(), "fashion-mnist": load_fashion_mnist,
           "fashion-mnist-32": load_fashion_mnist_32,
           "cifar10": _cifar("cifar10"), "cifar100": _cifar("cifar100")}
GENERATED = {"mnist1d"}  # made in memory: a --data-dir means nothing for these


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a dataset by name: 'mnist1d' (generated), 'fashion-mnist'/'fashion-mnist-32' (IDX files),
    'cifar10'/'cifar100'."""
    if name not in LOADERS:
        raise ModeconnError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}")
    if data_dir is not None and name in GENERATED:
        raise ModeconnError(f"{name} is generated in memory and reads no files: leave out {param('data_dir')}")
    return LOADERS[name](data_dir)


__all__ = ["Batches", "Dataset", "FASHION_MNIST_DIR", "GENERATED", "LOADERS", "from_torch", "load_dataset",
           "load_fashion_mnist", "load_fashion_mnist_32", "load_mnist1d", "tensors_from"]
