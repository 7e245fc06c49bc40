"""Fashion-MNIST from its IDX files (Debian's dataset-fashion-mnist), checked before use."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import ModeconnError, param
from .augment import CropFlip
from .datasets import Dataset

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


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
    raise ModeconnError(f"{folder} has no {stem}[.gz]: point {param('data_dir')} at a Fashion-MNIST folder "
                        "(on Debian: apt-get install dataset-fashion-mnist)")


FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


def load_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST from its IDX files, as (N, 1, 28, 28) normalised tensors."""
    folder = Path(data_dir or FASHION_MNIST_DIR)
    if not folder.is_dir():
        raise ModeconnError(f"no Fashion-MNIST folder at {folder}: install it with "
                            f"`apt-get install dataset-fashion-mnist` or pass {param('data_dir')}")
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    files = [_find_idx(folder, s) for s in names]
    parts = [_read_idx(f) for f in files]
    for images, labels, image_file, label_file in ((parts[0], parts[1], files[0], files[1]),
                                                    (parts[2], parts[3], files[2], files[3])):
        _check_pair(images, labels, image_file, label_file)
    img = lambda a: ((torch.from_numpy(a.copy()).float() / 255 - FASHION_MEAN) / FASHION_STD).unsqueeze(1)  # noqa: E731
    lab = lambda a: torch.from_numpy(a.astype(np.int64))  # noqa: E731
    return Dataset("fashion-mnist", img(parts[0]), lab(parts[1]), img(parts[2]), lab(parts[3]), 10)


def _check_pair(images: np.ndarray, labels: np.ndarray, image_file: Path, label_file: Path) -> None:
    """Refuse images and labels that do not belong together: shapes, counts, label range."""
    if images.ndim != 3 or labels.ndim != 1:
        raise ModeconnError(f"{image_file} / {label_file} have shapes {images.shape} / {labels.shape}, expected "
                            "(N, 28, 28) images and (N,) labels; reinstall the dataset files")
    if len(images) != len(labels):
        raise ModeconnError(f"{image_file} holds {len(images)} images but {label_file} {len(labels)} labels; "
                            "reinstall the dataset files")
    if len(labels) and int(labels.max()) >= 10:
        raise ModeconnError(f"{label_file} holds label {int(labels.max())}, outside 0..9: it is not Fashion-MNIST; "
                            "reinstall the dataset files")


def load_fashion_mnist_32(data_dir: str | os.PathLike | None = None) -> Dataset:
    """Fashion-MNIST padded to 32x32 with the paper's crop-and-flip augmentation: CIFAR-sized inputs
    for VGG/PreResNet, the scaled-down stand-in for the paper's CIFAR experiments."""
    d = load_fashion_mnist(data_dir)
    # a black pixel, normalised as the images
    background = float((torch.zeros(1, device="cpu") - FASHION_MEAN) / FASHION_STD)
    pad = lambda x: torch.nn.functional.pad(x, (2, 2, 2, 2), value=background)  # noqa: E731
    return Dataset("fashion-mnist-32", pad(d.train_x), d.train_y, pad(d.test_x), d.test_y, 10,
                   train_transform=CropFlip(pad_value=torch.tensor([background], device="cpu")))
