"""Opt-in speed settings for training and evaluation: bf16 autocast, channels_last, torch.compile.

A `Speed` value is passed to what runs the network (the training loop, evaluation, ensembles);
there is no global state. The CLI builds one from --amp, --channels-last and --compile.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch

from ..errors import ModeconnError, param

AMP_DTYPES = {"bf16": torch.bfloat16}


@dataclass(frozen=True)
class Speed:
    """amp: None or 'bf16' (autocast); channels_last: NHWC images; compile: torch.compile the network."""

    amp: str | None = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.amp not in (None, *AMP_DTYPES):
            raise ModeconnError(f"{param('amp')} must be one of {', '.join(AMP_DTYPES)} (or left out), "
                                f"got {self.amp!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def autocast(self, device: torch.device | str):
        """Mixed-precision context for forward passes on `device` (a no-op unless amp is set)."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=AMP_DTYPES[self.amp])

    def input(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format asked for (channels_last applies to 4-D images)."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        """Put a network's 4-D weights in channels_last when asked (in place); returns it."""
        if self.channels_last:
            # torch's stubs list no memory_format for Module.to, but Module.to accepts it (it parses its
            # arguments with torch._C._nn._parse_to, the Tensor.to parser): the stubs are narrower than the code
            module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return module

    def compiled(self, fn):
        """`torch.compile(fn)` when asked, else `fn` unchanged."""
        return torch.compile(fn) if self.compile else fn


EAGER = Speed()  # the default everywhere: fp32, contiguous, not compiled
