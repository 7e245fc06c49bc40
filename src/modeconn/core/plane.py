"""The plane through three weight vectors: an orthonormal basis, a grid over it, and its metrics.

u = w2 - w1, v = (w3 - w1) minus its projection on u, both normalised; the point (x, y) is
w1 + x u_hat + y v_hat (Garipov et al. 2018, section 3).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ModeconnError, param

COLLINEAR_TOL = 1e-6


@dataclass
class PlaneBasis:
    """Origin w1 and orthonormal directions u_hat, v_hat spanning the plane through w1, w2, w3."""

    origin: torch.Tensor
    u_hat: torch.Tensor
    v_hat: torch.Tensor
    u_norm: float
    v_norm: float

    def point(self, x: float, y: float) -> torch.Tensor:
        """The weight vector at plane coordinates (x, y)."""
        return self.origin + x * self.u_hat + y * self.v_hat

    def points(self, coords: np.ndarray) -> torch.Tensor:
        """Weight vectors at many (x, y) coordinates, as an (n, P) tensor."""
        c = torch.as_tensor(np.asarray(coords), dtype=self.origin.dtype, device=self.origin.device)
        return self.origin + c[:, :1] * self.u_hat + c[:, 1:] * self.v_hat

    def project(self, w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates of (n, P) weights in the plane, and each one's distance from the plane."""
        d = (w.double() - self.origin.double())
        x = d @ self.u_hat.double()
        y = d @ self.v_hat.double()
        resid = d - x[:, None] * self.u_hat.double() - y[:, None] * self.v_hat.double()
        return torch.stack([x, y], 1).cpu().numpy(), resid.norm(dim=1).cpu().numpy()

    def anchor_coords(self, w3: torch.Tensor) -> np.ndarray:
        """Plane coordinates of w1, w2, w3: (0, 0) and (|u|, 0) exactly by construction, w3 projected."""
        x3 = float((w3.double() - self.origin.double()) @ self.u_hat.double())
        return np.array([[0.0, 0.0], [self.u_norm, 0.0], [x3, self.v_norm]])

    def barycentric(self, coords: np.ndarray, anchors_xy: np.ndarray) -> np.ndarray:
        """Coefficients (a, b, c), summing to 1, with point(x, y) = a w1 + b w2 + c w3; negative outside the
        triangle."""
        coords = np.asarray(coords, dtype=float).reshape(-1, 2)
        c = coords[:, 1] / self.v_norm
        b = (coords[:, 0] - c * anchors_xy[2, 0]) / self.u_norm
        return np.stack([1 - b - c, b, c], 1)

    def orthogonality_error(self) -> float:
        """max(|<u,v>|, ||u|-1|, ||v|-1|): zero for an exact orthonormal basis."""
        u, v = self.u_hat.double(), self.v_hat.double()
        return float(max(abs(u @ v), abs(u.norm() - 1), abs(v.norm() - 1)))


def plane_basis(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> PlaneBasis:
    """The basis of the design: refuses coincident or collinear points (they span no plane)."""
    if not (w1.shape == w2.shape == w3.shape):
        raise ModeconnError(f"the three points have different sizes ({w1.numel()}, {w2.numel()}, {w3.numel()}): "
                            "use networks of the same architecture")
    u = (w2 - w1).double()
    u_norm = float(u.norm())
    if u_norm == 0:
        raise ModeconnError("the first two points are identical: a plane needs three distinct points")
    u_hat = u / u_norm
    d3 = (w3 - w1).double()
    v = d3 - (d3 @ u_hat) * u_hat
    v_norm = float(v.norm())
    if v_norm <= COLLINEAR_TOL * max(float(d3.norm()), u_norm):
        raise ModeconnError("the three points are collinear (or two coincide): they span no plane; "
                            "pick a third point off the line through the other two")
    v_hat = v / v_norm
    dtype = w1.dtype
    return PlaneBasis(w1.clone(), u_hat.to(dtype), (v_hat).to(dtype), u_norm, v_norm)


def grid_axes(anchor_xy: np.ndarray, grid: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """G evenly spaced x and y values spanning the anchor points plus `margin` of the span on each side."""
    if grid < 2:
        raise ModeconnError(f"{param('grid')} must be >= 2 points per side, got {grid}")
    if not np.isfinite(margin) or margin < 0:
        raise ModeconnError(f"{param('margin')} must be a finite number >= 0, got {margin}")
    lo, hi = anchor_xy.min(0), anchor_xy.max(0)
    span = hi - lo
    xs = np.linspace(lo[0] - margin * span[0], hi[0] + margin * span[0], grid)
    ys = np.linspace(lo[1] - margin * span[1], hi[1] + margin * span[1], grid)
    return xs, ys
