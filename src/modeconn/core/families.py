"""Curve families: each maps t in [0, 1] to one coefficient per control point."""
from __future__ import annotations

import math

import torch

from ..errors import ModeconnError


def bezier(t: float, num_points: int) -> list[float]:
    """Bernstein basis: c_k(t) = binom(K-1, k) t^k (1-t)^(K-1-k)."""
    n = num_points - 1
    return [math.comb(n, k) * t**k * (1 - t) ** (n - k) for k in range(num_points)]


def polychain(t: float, num_points: int) -> list[float]:
    """Hat functions over evenly spaced knots: c_k(t) = max(0, 1 - |t(K-1) - k|)."""
    return [max(0.0, 1.0 - abs(t * (num_points - 1) - k)) for k in range(num_points)]


FAMILIES = {"bezier": bezier, "polychain": polychain}


def check_family(kind: str, num_points: int) -> None:
    """Refuse an unknown family or fewer than two control points."""
    if kind not in FAMILIES:
        raise ModeconnError(f"unknown curve kind {kind!r}: choose one of {', '.join(FAMILIES)}")
    if num_points < 2:
        raise ModeconnError(f"a curve needs at least 2 control points, got {num_points}")


def coefficients(kind: str, t, num_points: int) -> torch.Tensor:
    """Coefficients of shape t.shape + (num_points,), in float64; they sum to one."""
    check_family(kind, num_points)
    t = torch.as_tensor(t, dtype=torch.float64, device="cpu")  # computed in Python: the caller moves it
    rows = [FAMILIES[kind](float(v), num_points) for v in t.reshape(-1).tolist()]
    return torch.tensor(rows, dtype=torch.float64, device="cpu").reshape(*t.shape, num_points)
