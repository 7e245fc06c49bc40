"""Directions to slice the loss along: filter-normalised random ones (Li et al. 2018) and a trajectory's PCA."""
from __future__ import annotations

import torch

from ..errors import ModeconnError
from .flat import FlatSpace


def filter_normalized(space: FlatSpace, weights: torch.Tensor, generator: torch.Generator,
                      bn_directions: bool = False) -> torch.Tensor:
    """One random direction, each filter rescaled to the norm of the matching filter of `weights`.

    A filter is one slice along dim 0 of a tensor with two or more dimensions (an output unit or
    channel). Tensors of one dimension (biases, BatchNorm) get zero, or with `bn_directions` the
    weights themselves, as Li et al.'s code does. Drawn on the CPU, so a seed gives the same
    direction on any device.
    """
    pieces, views = [], space.unflatten(weights.detach())
    for slot in space.slots:
        w = views[slot.name].to(device="cpu", dtype=torch.float64)
        if len(slot.shape) <= 1:
            pieces.append((w.clone() if bn_directions else torch.zeros_like(w, device="cpu")).reshape(-1))
            continue
        r = torch.randn(slot.shape, generator=generator, dtype=torch.float64, device="cpu")
        w_norm, r_norm = w.flatten(1).norm(dim=1), r.flatten(1).norm(dim=1).clamp_min(1e-30)
        pieces.append((r.flatten(1) * (w_norm / r_norm)[:, None]).reshape(-1))
    return torch.cat(pieces).to(device=weights.device, dtype=weights.dtype)


def random_directions(space: FlatSpace, weights: torch.Tensor, dims: int, seed: int,
                      bn_directions: bool = False) -> torch.Tensor:
    """`dims` filter-normalised random directions around `weights`, as a (dims, P) tensor, from one seed."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.stack([filter_normalized(space, weights, generator, bn_directions) for _ in range(dims)])


def pca_directions(states: torch.Tensor, centre: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The top `dims` principal directions of the states' offsets from `centre` (unit vectors, (dims, P)),
    the states' coordinates along them ((n, dims)) and the fraction of variance each explains."""
    if len(states) < 3:
        raise ModeconnError(f"a trajectory needs at least 3 kept states for PCA directions, got {len(states)}; "
                            "train with --keep-every K")
    offsets = (states - centre).double()
    _, s, vh = torch.linalg.svd(offsets, full_matrices=False)
    if len(s) < dims or float(s[dims - 1]) <= 1e-12 * float(s[0].clamp_min(1e-300)):
        raise ModeconnError(f"the trajectory's states span fewer than {dims} directions: keep more epochs")
    directions = vh[:dims]
    explained = (s[:dims] ** 2 / (s ** 2).sum()).tolist()
    return directions.to(states.dtype), offsets @ directions.T, explained
