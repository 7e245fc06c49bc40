"""Metrics over a grid of points (the plane through three weight vectors, a landscape slice): resumable, sharded by
whole points."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..core.curve import Curve
from ..core.plane import PlaneBasis, grid_axes, plane_basis
from ..data.datasets import DataSource
from ..errors import ModeconnError
from ..runtime.speed import EAGER, Speed
from ..storage.files import load_npz, read_json, save_npz, write_json
from ..storage.partial import fingerprint_of
from ..storage.record import Record
from ..tasks import headline, metric_label
from .pointwise import (
    EvalSettings,
    PointEvaluator,
    check_metric_arrays,
    measure_points,
    metric_names,
    metrics_store,
    task_settings,
)

CURVE_POINTS = 61
PARTIAL = "plane.partial.npz"


@dataclass
class PlaneResult(Record):
    """A measured plane: plane.npz holds the arrays, plane.json the summary.

    `metrics[m][i, j]` is metric m at (xs[i], ys[j]). For a curve's plane, `curve_xy` holds
    its points at `curve_t` projected onto the plane and `bends_xy` its bends.
    """

    xs: np.ndarray
    ys: np.ndarray
    metrics: dict[str, np.ndarray]
    points_xy: np.ndarray
    summary: dict
    curve: dict[str, np.ndarray] = field(default_factory=dict)  # curve_t, curve_xy, bends_xy

    def arrays(self) -> dict[str, np.ndarray]:
        """The content of plane.npz."""
        return {"xs": self.xs, "ys": self.ys, "points_xy": self.points_xy, **self.metrics, **self.curve}

    kind = "plane"
    file = "plane.json"

    def write(self, folder, file: str | None = None) -> Path:
        """Write plane.npz and plane.json (last: a folder with plane.json is complete). Data only: the figure is
        `reporting.plots.plot_plane`'s, drawn by the command before it writes."""
        folder = Path(folder)
        save_npz(folder / "plane.npz", self.arrays())
        write_json(folder / self.file, self.summary)
        return folder / self.file

    @classmethod
    def read(cls, path) -> PlaneResult:
        """Read a finished plane folder (or its plane.json, with plane.npz beside it)."""
        out = Path(path) if Path(path).is_dir() else Path(path).parent
        arrays, summary = load_npz(out / "plane.npz"), read_json(out / "plane.json")
        metrics = metric_names(arrays)
        missing = [k for k in ("xs", "ys", "points_xy", "train_loss", "test_loss") if k not in arrays]
        if missing or not isinstance(summary, dict) or not isinstance(summary.get("settings"), dict):
            raise ModeconnError(f"{out} does not hold a complete plane ({', '.join(missing) or 'plane.json settings'} "
                                "missing); rerun `modeconn plane`")
        check_metric_arrays({m: arrays[m] for m in metrics}, (len(arrays["xs"]), len(arrays["ys"])),
                            out / "plane.npz", "plane")
        return cls(arrays["xs"], arrays["ys"], {m: arrays[m] for m in metrics}, arrays["points_xy"], summary,
                   {k: arrays[k] for k in ("curve_t", "curve_xy", "bends_xy") if k in arrays})

    def describe(self) -> str:
        m, h = self.metrics, headline(self.metrics)
        return (f"plane {len(self.xs)}x{len(self.ys)}: train loss {m['train_loss'].min():.4g}.."
                f"{m['train_loss'].max():.4g}, {metric_label(h)} {m[h].min():.4f}..{m[h].max():.4f}")


@torch.no_grad()
def project_curve(basis: PlaneBasis, curve) -> tuple[dict[str, np.ndarray], dict]:
    """The curve's points and bends in plane coordinates, and how far each lies from the plane."""
    ts = np.linspace(0, 1, CURVE_POINTS)
    # one point at a time: the CURVE_POINTS weight vectors stacked in float64 would need ~1 GB per million
    # parameters (5.4 GB for a ResNet-18)
    projected = [basis.project(curve.weights(float(t)).detach()[None]) for t in ts]
    xy, dist = np.concatenate([p[0] for p in projected]), np.concatenate([p[1] for p in projected])
    bends_xy, bends_dist = basis.project(curve.control_points().detach()[1:-1])
    arrays = {"curve_t": ts, "curve_xy": xy, "bends_xy": bends_xy}
    summary = {"curve_distance_to_plane": dist.tolist(), "curve_max_distance_to_plane": float(dist.max()),
               "curve_max_distance_relative": float(dist.max() / basis.u_norm),
               "bends_distance_to_plane": bends_dist.tolist()}
    return arrays, summary


def plane_fingerprint(sources, bend, grid: int, margin: float, bn_samples, train_samples, basis: PlaneBasis,
                      repair: bool = False, data: dict | None = None) -> str:
    """What a partial grid must match to be resumed: its sources, grid and measuring settings, and `data` (the
    dataset measured on, where it is not the sources')."""
    return json.dumps({"sources": sources, "bend": bend, "grid": grid, "margin": margin, "bn_samples": bn_samples,
                       "train_samples": train_samples, "u_norm": round(basis.u_norm, 6),
                       "v_norm": round(basis.v_norm, 6),
                       **({"repair": True} if repair else {}), **(data or {})}, sort_keys=True)


@dataclass(frozen=True)
class PlaneGrid:
    """The grid in the plane through three weight vectors (Garipov et al. 2018, Fig. 1): the orthonormal
    basis, the anchors' plane coordinates ((3, 2): w1 at (0, 0), w2 on the x-axis), the axes (G,) each and
    every grid point's coordinates ((G * G, 2), x-major: row i * G + j is (xs[i], ys[j]))."""

    basis: PlaneBasis
    anchors_xy: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    grid: int
    margin: float

    @cached_property
    def coords(self) -> np.ndarray:  # built once: measure_plane and REPAIR's note both read it
        return np.array([(x, y) for x in self.xs for y in self.ys])


def plane_grid(w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor, grid: int = 21, margin: float = 0.2
               ) -> PlaneGrid:
    """The G x G grid spanning three flat weight vectors ((P,) each, e.g. `core.flat.parameters_vector(net)`)
    plus `margin` (a fraction of the span) on each side. Raises ModeconnError for coincident or collinear
    points, grid < 2 or a negative margin."""
    basis = plane_basis(w1, w2, w3)
    anchors_xy = basis.anchor_coords(w3)
    xs, ys = grid_axes(anchors_xy, grid, margin)
    return PlaneGrid(basis, anchors_xy, xs, ys, grid, margin)


def measure_plane(plane: PlaneGrid, template: nn.Module, data: DataSource, settings: EvalSettings | None = None, *,
                  curve: Curve | None = None, points_at=None, chunk: int = 1, store: Path | None = None,
                  fingerprint: str = "", force: bool = False, progress: bool = True, speed: Speed = EAGER,
                  repair: bool = False, record: dict | None = None) -> PlaneResult:
    """Metrics (train/test loss and error, BN recomputed per point) at every point of `plane`, run through
    `template` (a network of the anchors' architecture), as a PlaneResult; with `curve`, its points and bends
    projected onto the plane and their distances from it.

    `points_at(coords)` replaces the plane's own weight vectors ((n, P)), as REPAIR's hook does. With `store`
    (a folder), the measured points are saved there after each round under `fingerprint`, and a rerun
    computes only the missing ones; without it nothing is written. `repair` records in the settings that
    `points_at` applies REPAIR; `record` adds fields to the summary (the sources, the repair note). Under
    torchrun each rank measures whole points.
    """
    settings = settings or EvalSettings()
    evaluator = PointEvaluator(template, data, settings, chunk=chunk, speed=speed)
    coords = plane.coords
    rows = metrics_store(store, PARTIAL, fingerprint_of(fingerprint, grid=plane.grid, margin=plane.margin,
                                                        repair=repair, settings=settings.__dict__,
                                                        **task_settings(data.task)),
                         len(coords), force, evaluator.metrics)
    values = measure_points(coords, points_at or plane.basis.points, evaluator, rows, progress)
    rows.finish()  # done: a later call measures afresh
    basis = plane.basis
    summary = {"u_norm": basis.u_norm, "v_norm": basis.v_norm, "orthogonality_error": basis.orthogonality_error(),
               "settings": {"grid": plane.grid, "margin": plane.margin, "chunk": chunk, "repair": repair,
                            **settings.__dict__, **task_settings(data.task)},
               **(record or {}),
               "points_xy": plane.anchors_xy.tolist(), "grid_index": "metric[i, j] is at (xs[i], ys[j])"}
    curve_arrays: dict[str, np.ndarray] = {}
    if curve is not None:
        curve_arrays, curve_summary = project_curve(basis, curve)
        summary.update(curve_summary)
    return PlaneResult(plane.xs, plane.ys, {m: values[m].reshape(plane.grid, plane.grid) for m in evaluator.metrics},
                       plane.anchors_xy, summary, curve_arrays)
