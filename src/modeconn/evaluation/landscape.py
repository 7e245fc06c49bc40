"""A slice of the loss landscape around one weight vector: the grid of coordinates and the measured result."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.directions import random_directions
from ..core.flat import parameter_space, parameters_vector
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..runtime.speed import EAGER, Speed
from ..storage.files import load_npz, read_json, save_npz, write_json
from ..storage.partial import fingerprint_of
from ..storage.record import Record
from ..tasks import headline, metric_label
from .batchnorm import batchnorm_note
from .pointwise import (
    EvalSettings,
    PointEvaluator,
    check_metric_arrays,
    measure_points,
    metric_names,
    metrics_store,
    task_settings,
)

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
class LandscapeResult(Record):
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

    kind = "landscape"
    file = "landscape.json"

    def write(self, folder, file: str | None = None) -> Path:
        """Write landscape.npz and landscape.json (last: a folder with it is complete). Data only: the figure
        is `reporting.plots.plot_landscape`'s, drawn by the command before it writes."""
        folder = Path(folder)
        save_npz(folder / "landscape.npz", self.arrays())
        write_json(folder / self.file, self.summary)
        return folder / self.file

    @classmethod
    def read(cls, path) -> LandscapeResult:
        """Read a finished landscape folder (or its landscape.json, with landscape.npz beside it)."""
        out = Path(path) if Path(path).is_dir() else Path(path).parent
        arrays, summary = load_npz(out / "landscape.npz"), read_json(out / "landscape.json")
        metrics = metric_names(arrays)
        missing = [k for k in ("xs", "train_loss", "test_loss") if k not in arrays]
        if missing or not isinstance(summary, dict) or not isinstance(summary.get("settings"), dict):
            raise ModeconnError(f"{out} does not hold a complete landscape ({', '.join(missing) or 'settings'} "
                                "missing); rerun `modeconn landscape`")
        axes = [arrays["xs"]] + ([arrays["ys"]] if "ys" in arrays else [])
        check_metric_arrays({m: arrays[m] for m in metrics}, tuple(len(a) for a in axes), out / "landscape.npz",
                            "landscape")
        return cls(axes, {m: arrays[m] for m in metrics}, summary,
                   {k: arrays[k] for k in ("trajectory_xy", "trajectory_epochs") if k in arrays})

    def describe(self) -> str:
        m, h = self.metrics, headline(self.metrics)
        return (f"{self.dims}-D slice, {'x'.join(str(n) for n in m['train_loss'].shape)} points: train loss "
                f"{m['train_loss'].min():.4g}..{m['train_loss'].max():.4g}, {metric_label(h)} {m[h].min():.4f}.."
                f"{m[h].max():.4f}")


def slice_directions(model: nn.Module, dims: int = 2, seed: int = 0, bn_directions: bool = False) -> torch.Tensor:
    """`dims` filter-normalised random directions around `model`'s weights, a (dims, P) tensor (Li et al. 2018):
    each filter rescaled to the norm of the model's filter; biases and BatchNorm parameters get zero unless
    `bn_directions`. Drawn on the CPU from `seed`, so the same on any device."""
    return random_directions(parameter_space(model), parameters_vector(model), dims, seed, bn_directions)


def measure_slice(model: nn.Module, data: DataSource, directions: torch.Tensor, half_widths, grid: int = 21,
                  settings: EvalSettings | None = None, *, chunk: int = 1, store: Path | None = None,
                  fingerprint: str = "", force: bool = False, progress: bool = True, speed: Speed = EAGER,
                  record: dict | None = None, record_settings: dict | None = None,
                  trajectory: dict[str, np.ndarray] | None = None) -> LandscapeResult:
    """Metrics (BN recomputed per point) over a 1-D or 2-D slice around `model`: the weights w + x d1 (+ y d2)
    for `grid` evenly spaced x (and y) in [-w_k, w_k], `directions` (dims, P), `half_widths` one per direction.

    Returns a LandscapeResult, metrics of shape (G,) or (G, G). With `store` (a folder) the measured
    points are saved after each round under `fingerprint` and a rerun computes only the missing ones;
    without it nothing is written. `record` and `record_settings` add fields to the summary and its
    settings; `trajectory` (PCA's kept states' coordinates) is kept with the arrays.
    """
    dims = len(directions)
    if dims not in (1, 2):
        raise ModeconnError(f"a slice has 1 or 2 directions, got {dims}")
    if grid < 2:
        raise ModeconnError(f"{param('grid')} must be >= 2 points per side, got {grid}")
    settings = settings or EvalSettings()
    weights = parameters_vector(model).to(directions.device)
    axes = slice_axes(dims, grid, list(half_widths))
    coords = slice_coords(axes)
    evaluator = PointEvaluator(model, data, settings, chunk=chunk, speed=speed)
    rows = metrics_store(store, PARTIAL, fingerprint_of(fingerprint, grid=grid, half_widths=list(half_widths),
                                                        norms=[round(float(d.double().norm()), 6) for d in directions],
                                                        settings=settings.__dict__, **task_settings(data.task)),
                         len(coords), force, evaluator.metrics)
    values = measure_points(coords, Slice(weights, directions).points, evaluator, rows, progress)
    rows.finish()  # done: a later call measures afresh
    summary = {**(record or {}),
               # the evaluation settings first: their own `seed` (the BN subset's) must not hide the directions'
               "settings": {**{k: v for k, v in settings.__dict__.items() if k != "seed"}, "grid": grid,
                            **(record_settings or {}), "chunk": chunk, **task_settings(data.task)},
               "direction_norms": [float(d.double().norm()) for d in directions],
               "half_widths": list(half_widths), "grid_index": "metric[i, j] is at (xs[i], ys[j])",
               "batchnorm": batchnorm_note(model),
               **{f"{m}_range": [float(np.min(values[m])), float(np.max(values[m]))] for m in evaluator.metrics}}
    return LandscapeResult(axes, {m: values[m].reshape((grid,) * dims) for m in evaluator.metrics}, summary,
                           trajectory or {})
