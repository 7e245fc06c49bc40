"""Opt-in speed settings for training and evaluation: bf16 autocast, channels_last, torch.compile.

Like `torch.backends` flags they are set once for a block of work (the CLI sets them for a
command from --amp, --channels-last and --compile) and read where the network runs:

    with speed.using(Speed(amp="bf16", channels_last=True)):
        train_run(...)
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

from .errors import ModeconnError

AMP_DTYPES = {"bf16": torch.bfloat16}


@dataclass(frozen=True)
class Speed:
    """amp: None or 'bf16' (autocast); channels_last: NHWC images; compile: torch.compile the network."""

    amp: str | None = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.amp not in (None, *AMP_DTYPES):
            raise ModeconnError(f"--amp must be one of {', '.join(AMP_DTYPES)} (or left out), got {self.amp!r}")

    def to_dict(self) -> dict:
        return asdict(self)


_current = [Speed()]


def current() -> Speed:
    """The settings in force."""
    return _current[-1]


@contextlib.contextmanager
def using(settings: Speed):
    """Use `settings` for the work inside the block."""
    _current.append(settings)
    try:
        yield settings
    finally:
        _current.pop()


def autocast(device: torch.device | str):
    """Mixed-precision context for forward passes on `device` (a no-op unless amp is set)."""
    amp = current().amp
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=AMP_DTYPES[amp]) if amp else contextlib.nullcontext()


def prepare_input(x: torch.Tensor) -> torch.Tensor:
    """A batch in the memory format the settings ask for (channels_last applies to 4-D images)."""
    if current().channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def prepare_module(module: torch.nn.Module) -> torch.nn.Module:
    """Put a network's 4-D weights in channels_last when asked (in place); returns it."""
    if current().channels_last:
        module.to(memory_format=torch.channels_last)
    return module


def maybe_compile(fn):
    """`torch.compile(fn)` when asked, else `fn` unchanged."""
    return torch.compile(fn) if current().compile else fn
