"""`modeconn plane`: metrics over a grid in the plane through three networks or a curve's start, end and bend."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..alignment.repair import repairable_layers, repaired_plane
from ..core.flat import parameters_vector
from ..core.plane import grid_axes
from ..errors import ModeconnError
from ..evaluation.plane_grid import (
    PlaneResult,
    measure_plane,
    plane_fingerprint,
    plane_grid,
)
from ..reporting.plots import plot_plane
from ..storage.runfolder import (
    describe_endpoints,
    load_curve,
    load_endpoints,
    read_curve_run,
)
from . import validate
from .common import RunFolder, eval_settings, other_dataset
from .options import OTHER_DATASET_HELP, REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class PlaneOptions(EvalOptions):
    out: str = option(REQUIRED, "the folder to write plane.npz, plane.json and plane.png in")
    points: list[str] | None = option(None, "three networks: w1 w2 w3", nargs=3, metavar="RUN")
    curve: str | None = option(None, "a curve run: the plane through its start, end and a bend")
    bend: int | None = option(None, "which bend (1..bends) spans the plane; default the middle")
    grid: int = option(21, "grid points per side (paper: 21)")
    margin: float = option(0.2, "margin on each side, as a fraction of the span")
    dataset: str | None = option(None, OTHER_DATASET_HELP)
    chunk: int | None = option(None, "grid points evaluated at once with torch.func.vmap (default 1; measured "
                                     "slower on CPU, may pay for small nets on a GPU)")
    repair: bool = option(False, "REPAIR each point's unit statistics (networks without BatchNorm; "
                                 "Jordan et al. 2023)")


def _summary(result: PlaneResult, o: PlaneOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/plane.npz, plane.json, plane.png"


@command("plane", PlaneOptions, help="metrics over a grid in the plane through three networks or a curve",
         summary=_summary)
def plane(o: PlaneOptions) -> PlaneResult:
    """The G x G grid in the plane through three networks or a curve's start, end and bend: plane.npz/.json/.png.

    A killed plane restarted with the same command computes only the missing points. With `repair`,
    each point gets REPAIR's statistics, the barycentric combination of the three anchors'.
    """
    if (o.points is None) == (o.curve is None):
        raise ModeconnError("give either --points A B C or --curve RUN")
    if o.points is not None and len(o.points) != 3:
        raise ModeconnError(f"--points takes exactly three networks, got {len(o.points)}")
    grid = validate.positive_int("--grid", o.grid)
    margin = o.margin
    grid_axes(np.zeros((1, 2)), grid, validate.nonnegative_float("--margin", margin))
    chunk = validate.optional(validate.positive_int, "--chunk", o.chunk) or 1  # vmap was slower on 2 CPU cores
    bend = validate.optional(validate.positive_int, "--bend", o.bend)
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out, "plane.json", force=o.force)
    if o.curve is not None:
        info = read_curve_run(o.curve)
        assert info.curve is not None, "read_run gives every curve run its CurveSpec"
        if info.curve.bends < 1:
            raise ModeconnError(f"{o.curve} is a line (0 bends): it spans no plane; use --points with a third "
                                "network")
        k = (info.curve.bends + 1) // 2 if bend is None else bend
        if k > info.curve.bends:
            raise ModeconnError(f"--bend must be between 1 and {info.curve.bends} for {o.curve}, got {bend}")
        settings = eval_settings(info.wd, o.batch_size, o.bn_samples, o.train_samples)
        dev = folder.join(o.device)
        path, info, data = load_curve(o.curve, dev, data_dir, o.dataset)
        cp = path.control_points().detach()
        anchors, template = (cp[0], cp[-1], cp[k]), path.model_at(0.0)
        sources: str | list[str] = str(o.curve)
        anchor_nets = [path.control_model(i) for i in (0, path.num_points - 1, k)] if o.repair else []
    else:
        assert o.points is not None, "checked above: exactly one of --points and --curve"
        if bend is not None:
            raise ModeconnError("--bend chooses a curve's bend: use it with --curve, not --points")
        described = describe_endpoints(o.points, o.dataset)
        settings = eval_settings(described[0].wd, o.batch_size, o.bn_samples, o.train_samples)
        dev = folder.join(o.device)
        ends = load_endpoints(described, data_dir, dev)
        path, k, data, template = None, None, ends.data, ends.nets[0]
        first, second, third = ends.nets  # three: --points was checked to name three networks
        anchors = (parameters_vector(first), parameters_vector(second), parameters_vector(third))
        sources = [str(p) for p in o.points]
        anchor_nets = ends.nets
    if o.repair:
        repairable_layers(template, data.example_input())
    plane = plane_grid(*anchors, grid=grid, margin=margin)
    fingerprint = plane_fingerprint(sources, k, grid, margin, settings.bn_samples, settings.train_samples,
                                    plane.basis, o.repair, other_dataset(o.dataset))
    record: dict = {"sources": sources if o.points is not None else {"curve": sources, "bend": k},
                    **other_dataset(o.dataset)}
    if o.repair:
        outside = int((plane.basis.barycentric(plane.coords, plane.anchors_xy) < -1e-12).any(1).sum())
        record["repair"] = {"points_outside_triangle": outside, "outside": "statistics extrapolated affinely "
                            "from the three anchors', a target std below zero clamped to zero"}
    with folder.claim() as out:  # measure_plane refuses a partial grid of other settings before it writes
        points_at = (repaired_plane(plane.basis, plane.anchors_xy, anchor_nets, settings.bn_batches(data), data.task)
                     if o.repair else None)
        result = measure_plane(plane, template, data, settings, curve=path, points_at=points_at, chunk=chunk,
                               store=out, fingerprint=fingerprint, force=o.force, progress=o.progress,
                               speed=o.speed, repair=o.repair, record=record)
        plot_plane(result, out / "plane.png")
        result.write(out)
    return result
