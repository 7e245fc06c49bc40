"""Curve families: each maps t in [0, 1] to one coefficient per control point."""
from __future__ import annotations

import math

import torch

from .errors import ModeconnError


def bezier(t: torch.Tensor, num_points: int) -> torch.Tensor:
    """Bernstein basis: c_k(t) = binom(K-1, k) t^k (1-t)^(K-1-k)."""
    k = torch.arange(num_points, dtype=torch.float64)
    binom = torch.tensor([math.comb(num_points - 1, i) for i in range(num_points)], dtype=torch.float64)
    t = t.to(torch.float64).unsqueeze(-1)
    return binom * t**k * (1 - t) ** (num_points - 1 - k)


def polychain(t: torch.Tensor, num_points: int) -> torch.Tensor:
    """Hat functions over evenly spaced knots: c_k(t) = max(0, 1 - |t(K-1) - k|)."""
    k = torch.arange(num_points, dtype=torch.float64)
    t = t.to(torch.float64).unsqueeze(-1)
    return torch.clamp(1 - torch.abs(t * (num_points - 1) - k), min=0.0)


FAMILIES = {"bezier": bezier, "polychain": polychain}


def coefficients(kind: str, t, num_points: int) -> torch.Tensor:
    """Coefficients of shape t.shape + (num_points,), in float64; they sum to one."""
    if kind not in FAMILIES:
        raise ModeconnError(f"unknown curve kind {kind!r}: choose one of {', '.join(FAMILIES)}")
    if num_points < 2:
        raise ModeconnError(f"a curve needs at least 2 control points, got {num_points}")
    return FAMILIES[kind](torch.as_tensor(t, dtype=torch.float64), num_points)
