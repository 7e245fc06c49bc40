"""The flat view of a network: its tensors as one vector, with names, shapes and offsets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ModeconnError


@dataclass(frozen=True)
class Slot:
    """Where one named tensor lives inside the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


class FlatSpace:
    """Maps a fixed list of named tensors to and from one flat vector."""

    def __init__(self, named_tensors):
        self.slots: list[Slot] = []
        offset = 0
        for name, tensor in named_tensors:
            self.slots.append(Slot(name, tuple(tensor.shape), offset, tensor.numel()))
            offset += tensor.numel()
        self.size = offset

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.slots]

    def flatten(self, tensors: dict[str, torch.Tensor], like: torch.Tensor | None = None) -> torch.Tensor:
        """One vector holding the named tensors in slot order (empty: on `like`'s device and dtype)."""
        if not self.slots:
            return torch.zeros(0, dtype=like.dtype if like is not None else None,
                               device=like.device if like is not None else None)
        return torch.cat([tensors[s.name].detach().reshape(-1) for s in self.slots])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views into `vector` (no copies), one per name; autograd flows through them."""
        pieces = torch.split(vector, [s.numel for s in self.slots]) if self.slots else []
        return {s.name: p.view(s.shape) for s, p in zip(self.slots, pieces)}


def parameter_space(module: nn.Module) -> FlatSpace:
    """The flat space of a module's parameters, in `named_parameters` order."""
    return FlatSpace(module.named_parameters())


def float_buffer_space(module: nn.Module) -> FlatSpace:
    """Floating-point buffers (e.g. BatchNorm running statistics): interpolated along curves."""
    return FlatSpace((n, b) for n, b in module.named_buffers() if b.is_floating_point())


def int_buffer_space(module: nn.Module) -> FlatSpace:
    """Integer buffers (e.g. num_batches_tracked): carried over from the start network."""
    return FlatSpace((n, b) for n, b in module.named_buffers() if not b.is_floating_point())


def parameters_vector(module: nn.Module) -> torch.Tensor:
    """A copy of the module's parameters as one flat vector."""
    return parameter_space(module).flatten(dict(module.named_parameters()))


def load_parameters_vector(module: nn.Module, vector: torch.Tensor) -> None:
    """Copy a flat vector into the module's parameters in place."""
    views = parameter_space(module).unflatten(vector)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(views[name])


def check_same_architecture(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what=("start", "end")) -> None:
    """Refuse two state dicts whose names or shapes differ, naming the first difference (matched by name)."""
    hint = "use networks built by the same model"
    for name, tensor in a.items():
        if name not in b:
            raise ModeconnError(f"{what[0]} and {what[1]} have different architectures: {name!r} is in "
                                f"{what[0]} but not in {what[1]}; {hint}")
        if tuple(tensor.shape) != tuple(b[name].shape):
            raise ModeconnError(f"{what[0]} and {what[1]} have different architectures: {name!r} has shape "
                                f"{tuple(tensor.shape)} in {what[0]} but {tuple(b[name].shape)} in {what[1]}; {hint}")
    for name in b:
        if name not in a:
            raise ModeconnError(f"{what[0]} and {what[1]} have different architectures: {name!r} is in "
                                f"{what[1]} but not in {what[0]}; {hint}")
