"""MNIST-1D, generated locally by the mnist1d package (its download path is never used)."""
from __future__ import annotations

import functools

import numpy as np
import torch

from .datasets import Dataset


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
    f = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32, device="cpu")  # noqa: E731
    g = lambda a: torch.tensor(np.asarray(a), dtype=torch.long, device="cpu")  # noqa: E731
    return Dataset("mnist1d", f(x), g(y), f(xt), g(yt), 10)
