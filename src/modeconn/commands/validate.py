"""Checks at the door: every number, device and output path a command receives, before any work.

Each check returns the value to use or raises a one-line ModeconnError naming the option.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch

from ..errors import ModeconnError, param
from ..models import HF_PREFIX, check_model_name, huggingface
from ..runtime import distributed
from ..tasks import task_from


def _number(option: str, value, kind):
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ModeconnError(f"{option} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if kind is float and not math.isfinite(value):
        raise ModeconnError(f"{option} must be a finite number, got {value}")
    return value


def positive_int(option: str, value) -> int:
    """An integer >= 1."""
    return int_at_least(option, value, 1)


def int_at_least(option: str, value, low: int, why: str = "") -> int:
    """An integer >= low (below 2**63); `why` says in the error what the bound is for."""
    if _number(option, value, int) < low:
        bound = "a positive integer" if low == 1 and not why else f"an integer >= {low}"
        raise ModeconnError(f"{option} must be {bound}{f' ({why})' if why else ''}, got {value}")
    if value >= 2 ** 63:  # torch's generators, counters and indices take 64-bit signed integers
        raise ModeconnError(f"{option} must be below 2**63, got {value}")
    return value


def nonnegative_int(option: str, value) -> int:
    """An integer >= 0."""
    if _number(option, value, int) < 0:
        raise ModeconnError(f"{option} must be an integer >= 0, got {value}")
    if value >= 2 ** 63:  # torch's generators and indices take 64-bit signed integers
        raise ModeconnError(f"{option} must be below 2**63, got {value}")
    return value


def positive_float(option: str, value) -> float:
    """A finite number > 0."""
    value = _number(option, float(value) if isinstance(value, int) and not isinstance(value, bool) else value, float)
    if value <= 0:
        raise ModeconnError(f"{option} must be a positive number, got {value:g}")
    return value


def nonnegative_float(option: str, value) -> float:
    """A finite number >= 0."""
    value = _number(option, float(value) if isinstance(value, int) and not isinstance(value, bool) else value, float)
    if value < 0:
        raise ModeconnError(f"{option} must be a number >= 0, got {value:g}")
    return value


def optional(check, option: str, value):
    """`check` applied unless the value is None (an option left out)."""
    return None if value is None else check(option, value)


def task(spec: str | None) -> str | None:
    """A task's name (classification, regression) or a Task's package.module:Name, importable now (None: the
    data's own)."""
    if spec is not None:
        task_from(spec, param("task"))
    return spec


def model_name(name: str | None) -> str | None:
    """A registered model name, torchvision:NAME or timm:NAME of an installed library, hf:PATH (returned with the
    path made absolute), or a builder's package.module:callable, importable now (None: the dataset's default)."""
    if name is not None:
        check_model_name(name)
        if name.startswith(HF_PREFIX):  # a path recorded absolute, so the run is read back from anywhere
            return HF_PREFIX + huggingface.normalise(name.removeprefix(HF_PREFIX))
    return name


def device(name: str) -> torch.device:
    """A device this torch build and machine have: auto, cpu, cuda, cuda:N or mps."""
    if not isinstance(name, str) or not name:
        raise ModeconnError("--device must be auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        index = name[5:]
        if index and not index.isdigit():
            raise ModeconnError(f"--device {name}: the GPU index must be a number, as in cuda:0")
        if not torch.cuda.is_available():
            raise ModeconnError(f"--device {name} asked for a GPU but this machine and torch build have none "
                                "visible; use --device cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ModeconnError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) visible (cuda:0.."
                                f"cuda:{torch.cuda.device_count() - 1})")
        return torch.device(name)
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ModeconnError("--device mps asked for Apple's GPU, which this machine or torch build lacks; "
                                "use --device cpu")
        return torch.device("mps")
    raise ModeconnError(f"--device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def data_dir(path) -> str | None:
    """An existing folder, or None."""
    if path is None:
        return None
    if not str(path) or not Path(path).is_dir():
        raise ModeconnError(f"--data-dir {path}: no such folder; point it at the folder that holds the dataset files")
    return str(path)


def _writable_ancestor(path: Path, option: str) -> None:
    """Refuse a path under which nothing can be created, without changing anything there."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise ModeconnError(f"{option} {path}: {probe} is a file, not a folder; choose another {option}")
    if not distributed.is_main():  # under torchrun only rank 0 writes, so only it tries
        return
    try:  # a real write, as permissions alone do not show a read-only filesystem (or root's rights)
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".modeconn-write-test-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ModeconnError(f"{option} {path}: cannot write into {probe} ({exc.strerror}); choose another "
                            f"{option}") from None


def output_folder(option: str, path) -> Path:
    """A folder that is or can be created and written to; nothing is created yet."""
    if path is None or not str(path).strip():
        raise ModeconnError(f"{option} must name a folder, got an empty path")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ModeconnError(f"{option} {path} is a file, not a folder; choose another {option}")
    _writable_ancestor(path, option)
    return path


def output_file(option: str, path) -> Path:
    """A file that can be written; nothing is created yet. Whether one already there may be replaced is
    `check_unfinished`'s to say (at the door and under the folder's lock)."""
    if path is None or not str(path).strip():
        raise ModeconnError(f"{option} must name a file, got an empty path")
    path = Path(path)
    if path.is_dir():
        raise ModeconnError(f"{option} {path} is a folder; name the JSON file to write, e.g. {path / 'ensemble.json'}")
    _writable_ancestor(path.parent, option)
    return path
