"""CIFAR-10/100 from the standard python-version folders, read without unpickling arbitrary code.

The official files are pickles. A restricted unpickler accepts only the plain containers and the
numpy array constructors that those files use; anything else (a code-running pickle) is refused.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import ModeconnError, param
from .augment import CropFlip
from .datasets import Dataset

# Normalisation used by the paper's code.
STATS = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
         "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))}
LAYOUT = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"),
          "cifar100": ("cifar-100-python", ["train"], ["test"], b"fine_labels")}
ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
           ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
           ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # bytes under protocol 2 from Python 3


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _load_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as fh:
            d = _SafeUnpickler(fh, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[label_key], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ModeconnError(f"{path} is not a CIFAR python-version batch ({exc}); download the "
                            f"'python version' archive and extract it under {param('data_dir')}") from None
    if len(data) != len(labels):
        raise ModeconnError(f"{path} has {len(data)} images but {len(labels)} labels: it is corrupt")
    return data, labels


def load_cifar(name: str, data_dir, validation: bool = False):
    """CIFAR-10/100 as a normalised Dataset; `validation` holds out the last 5000 training images as the test set."""
    folder_name, train_files, test_files, key = LAYOUT[name]
    root = Path(data_dir or ".")
    folder = root if root.name == folder_name else root / folder_name
    if not folder.is_dir():
        raise ModeconnError(f"no {folder_name} folder at {folder}: pass {param('data_dir')} pointing at the folder "
                            f"that holds the extracted CIFAR python-version archive (torchvision's layout works)")
    missing = [f for f in train_files + test_files if not (folder / f).exists()]
    if missing:
        raise ModeconnError(f"{folder} lacks {', '.join(missing)}: it is not a complete {folder_name} folder")
    parts = [_load_batch(folder / f, key) for f in train_files]
    tx, ty = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    vx, vy = (tx[-5000:], ty[-5000:]) if validation else _load_batch(folder / test_files[0], key)
    if validation:
        tx, ty = tx[:-5000], ty[:-5000]
    mean, std = (torch.tensor(v, device="cpu").view(1, 3, 1, 1) for v in STATS[name])
    norm = lambda a: (torch.from_numpy(a).float() / 255 - mean) / std  # noqa: E731
    classes = 10 if name == "cifar10" else 100
    return Dataset(name, norm(tx), torch.from_numpy(ty), norm(vx), torch.from_numpy(vy), classes,
                   train_transform=CropFlip(pad_value=((0 - mean) / std).view(3)))
