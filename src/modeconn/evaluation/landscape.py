"""A slice of the loss landscape around one weight vector: the grid of coordinates and the measured result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModeconnError
from ..storage.files import load_npz, read_json, save_npz, write_json
from .pointwise import METRICS

PARTIAL = "landscape.partial.npz"


@dataclass
class Slice:
    """The weights centre + sum_k coords[k] * directions[k]: a line (1 direction) or a plane (2)."""

    centre: torch.Tensor
    directions: torch.Tensor  # (dims, P)

    def points(self, coords: np.ndarray) -> torch.Tensor:
        """Weight vectors at rows of `coords` ((n, dims)), as an (n, P) tensor."""
        c = torch.as_tensor(np.asarray(coords).reshape(-1, len(self.directions)), dtype=self.centre.dtype,
                            device=self.centre.device)
        return self.centre + c @ self.directions


def slice_axes(dims: int, grid: int, half_widths) -> list[np.ndarray]:
    """`grid` evenly spaced values in [-w, w] along each direction, one half-width w per direction."""
    return [np.linspace(-w, w, grid) for w in half_widths[:dims]]


def slice_coords(axes: list[np.ndarray]) -> np.ndarray:
    """Every grid point as a row: (G, 1) for a line, (G*G, 2) for a plane with x slowest
    (metric[i, j] at xs[i], ys[j])."""
    if len(axes) == 1:
        return axes[0][:, None]
    return np.array([(x, y) for x in axes[0] for y in axes[1]])


@dataclass
class LandscapeResult:
    """A measured slice: landscape.npz holds the arrays, landscape.json the summary.

    `metrics[m]` has shape (G,) for a 1-D slice and (G, G) for a 2-D one, `metrics[m][i, j]` at
    (xs[i], ys[j]). For PCA directions, `trajectory_xy` holds the kept states' coordinates.
    """

    axes: list[np.ndarray]
    metrics: dict[str, np.ndarray]
    summary: dict
    trajectory: dict[str, np.ndarray] = field(default_factory=dict)  # trajectory_xy, trajectory_epochs

    @property
    def dims(self) -> int:
        return len(self.axes)

    def arrays(self) -> dict[str, np.ndarray]:
        """The content of landscape.npz."""
        named = {"xs": self.axes[0], **({"ys": self.axes[1]} if self.dims == 2 else {})}
        return {**named, **self.metrics, **self.trajectory}

    def save(self, out: Path) -> None:
        """Write landscape.npz and landscape.json (last: a folder with it is complete). Data only: the figure
        is `reporting.plots.plot_landscape`'s, drawn by the command before it saves."""
        save_npz(out / "landscape.npz", self.arrays())
        write_json(out / "landscape.json", self.summary)

    @classmethod
    def load(cls, out) -> LandscapeResult:
        """Read a finished landscape folder."""
        out = Path(out)
        arrays, summary = load_npz(out / "landscape.npz"), read_json(out / "landscape.json")
        missing = [k for k in ("xs", *METRICS) if k not in arrays]
        if missing or not isinstance(summary, dict) or not isinstance(summary.get("settings"), dict):
            raise ModeconnError(f"{out} does not hold a complete landscape ({', '.join(missing) or 'settings'} "
                                "missing); rerun `modeconn landscape`")
        axes = [arrays["xs"]] + ([arrays["ys"]] if "ys" in arrays else [])
        return cls(axes, {m: arrays[m] for m in METRICS}, summary,
                   {k: arrays[k] for k in ("trajectory_xy", "trajectory_epochs") if k in arrays})
