"""`modeconn eval-curve`, `eval-line`, `plane`, `ensemble` and `eval-simplex`: measure curves, lines, planes,
curve ensembles and simplexes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..alignment.repair import repairable_layers, repaired_plane, repaired_points
from ..core.flat import parameters_vector
from ..core.plane import grid_axes, plane_basis
from ..errors import ModeconnError
from ..evaluation.along import PathEval, eval_path
from ..evaluation.ensemble import SpanEnsemble, curve_ensemble, simplex_ensemble
from ..evaluation.evaluate import batchnorm_note
from ..evaluation.plane_grid import (
    PARTIAL,
    PlaneResult,
    finish_partial,
    measure_grid,
    plane_fingerprint,
    project_curve,
    read_partial,
)
from ..evaluation.pointwise import METRICS, PointEvaluator
from ..reporting.plots import plot_along, plot_plane, plot_triangle
from ..runtime.speed import EAGER, Speed
from ..storage.files import write_json
from ..storage.runfolder import (
    check_unfinished,
    claim_output,
    describe_endpoints,
    load_curve,
    load_endpoints,
    load_simplex,
    read_curve_run,
    read_simplex_run,
)
from . import validate
from .common import eval_settings, join


def _write_eval(out: Path, result: PathEval, stem: str, title: str) -> None:
    plot_along(result, out / f"{stem}.png", title)
    write_json(out / f"{stem}.json", result.to_json())


def _points(points) -> int:
    if validate.positive_int("--points", points) < 2:
        raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
    return points


def eval_curve(run, points: int = 61, out=None, bn_samples: int | None = None, train_samples: int | None = None,
               batch_size: int = 1000, data_dir: str | None = None, device: str = "auto", force: bool = False,
               repair: bool = False, progress: bool = True, speed: Speed = EAGER) -> PathEval:
    """Metrics along a curve run and the line between its endpoints: curve_eval.json and .png (in the run folder
    or OUT)."""
    points = _points(points)
    info = read_curve_run(run)
    settings = eval_settings(info.wd, batch_size, bn_samples, train_samples)
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out if out is not None else run)
    check_unfinished(out, "curve_eval.json", force=force)
    dev = join(device)
    curve, info, data = load_curve(run, dev, data_dir)
    if repair:
        repairable_layers(curve.model_at(0.0), data.train_x[:2])
    with claim_output(out, "curve_eval.json", force=force):
        result = eval_path(curve, curve.model_at(0.0), curve.model_at(1.0), data, points, settings, progress, speed,
                           repaired_points(settings.bn_batches(data)) if repair else None)
        result.run = str(run)
        _write_eval(out, result, "curve_eval", f"{info.curve.kind} curve vs line, {info.dataset}")
    return result


def line_out(start, end, out=None) -> Path:
    """Where eval-line writes: OUT, or START-END-line beside START."""
    return Path(out) if out is not None else Path(start).parent / f"{Path(start).stem}-{Path(end).stem}-line"


def eval_line(start, end, out=None, points: int = 61, bn_samples: int | None = None,
              train_samples: int | None = None, batch_size: int = 1000, dataset: str | None = None,
              model: str | None = None, data_dir: str | None = None, device: str = "auto", force: bool = False,
              repair: bool = False, progress: bool = True, speed: Speed = EAGER) -> PathEval:
    """Linear mode connectivity of two networks: line_eval.json and .png (in START-END-line beside START, or OUT)."""
    points = _points(points)
    sources = describe_endpoints([start, end], dataset, validate.model_name(model))
    out = validate.output_folder("--out", line_out(start, end, out))
    check_unfinished(out, "line_eval.json", force=force)
    data_dir = validate.data_dir(data_dir)
    settings = eval_settings(sources[0].wd, batch_size, bn_samples, train_samples)
    dev = join(device)
    ends = load_endpoints(sources, data_dir, dev)
    if repair:
        repairable_layers(ends.nets[0], ends.data.train_x[:2])
    with claim_output(out, "line_eval.json", force=force):
        result = eval_path(None, *ends.nets, ends.data, points, settings, progress, speed,
                           repaired_points(settings.bn_batches(ends.data)) if repair else None)
        result.start, result.end = str(start), str(end)
        _write_eval(out, result, "line_eval", f"line between {start} and {end}, {ends.dataset}")
    return result


def plane(out, points=None, curve=None, bend: int | None = None, grid: int = 21, margin: float = 0.2,
          bn_samples: int | None = None, train_samples: int | None = None, batch_size: int = 1000,
          chunk: int | None = None, data_dir: str | None = None, device: str = "auto", force: bool = False,
          repair: bool = False, progress: bool = True, speed: Speed = EAGER) -> PlaneResult:
    """The G x G grid in the plane through three networks or a curve's start, end and bend: plane.npz/.json/.png.

    A killed plane restarted with the same command computes only the missing points. With `repair`,
    each point gets REPAIR's statistics, the barycentric combination of the three anchors'.
    """
    if (points is None) == (curve is None):
        raise ModeconnError("give either --points A B C or --curve RUN")
    if points is not None and len(points) != 3:
        raise ModeconnError(f"--points takes exactly three networks, got {len(points)}")
    grid = validate.positive_int("--grid", grid)
    grid_axes(np.zeros((1, 2)), grid, validate.nonnegative_float("--margin", margin))
    chunk = validate.optional(validate.positive_int, "--chunk", chunk) or 1  # vmap was slower on 2 CPU cores
    bend = validate.optional(validate.positive_int, "--bend", bend)
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    check_unfinished(out, "plane.json", force=force)
    if curve is not None:
        info = read_curve_run(curve)
        if info.curve.bends < 1:
            raise ModeconnError(f"{curve} is a line (0 bends): it spans no plane; use --points with a third network")
        k = (info.curve.bends + 1) // 2 if bend is None else bend
        if k > info.curve.bends:
            raise ModeconnError(f"--bend must be between 1 and {info.curve.bends} for {curve}, got {bend}")
        settings = eval_settings(info.wd, batch_size, bn_samples, train_samples)
        dev = join(device)
        path, info, data = load_curve(curve, dev, data_dir)
        cp = path.control_points().detach()
        anchors, template, sources = (cp[0], cp[-1], cp[k]), path.model_at(0.0), str(curve)
        anchor_nets = [path.control_model(i) for i in (0, path.num_points - 1, k)] if repair else []
    else:
        if bend is not None:
            raise ModeconnError("--bend chooses a curve's bend: use it with --curve, not --points")
        described = describe_endpoints(points)
        settings = eval_settings(described[0].wd, batch_size, bn_samples, train_samples)
        dev = join(device)
        ends = load_endpoints(described, data_dir, dev)
        path, k, data, template = None, None, ends.data, ends.nets[0]
        anchors, sources = tuple(parameters_vector(n) for n in ends.nets), [str(p) for p in points]
        anchor_nets = ends.nets
    if repair:
        repairable_layers(template, data.train_x[:2])
    basis = plane_basis(*anchors)
    anchors_xy = basis.anchor_coords(anchors[2])
    xs, ys = grid_axes(anchors_xy, grid, margin)
    coords = np.array([(x, y) for x in xs for y in ys])
    fingerprint = plane_fingerprint(sources, k, grid, margin, settings.bn_samples, settings.train_samples, basis,
                                    repair)
    with claim_output(out, "plane.json", force=force,
                      check=lambda o: read_partial(o, PARTIAL, fingerprint, len(coords), force)):
        evaluator = PointEvaluator(template, data, settings, chunk=chunk, speed=speed)
        points_at = repaired_plane(basis, anchors_xy, anchor_nets, settings.bn_batches(data)) if repair else None
        values = measure_grid(out, coords, points_at or basis.points, evaluator, fingerprint, force, progress)
        summary = {"u_norm": basis.u_norm, "v_norm": basis.v_norm, "orthogonality_error": basis.orthogonality_error(),
                   "settings": {"grid": grid, "margin": margin, "chunk": chunk, "repair": repair, **settings.__dict__},
                   "sources": sources if points is not None else {"curve": sources, "bend": k},
                   "points_xy": anchors_xy.tolist(), "grid_index": "metric[i, j] is at (xs[i], ys[j])"}
        if repair:
            outside = int((basis.barycentric(coords, anchors_xy) < -1e-12).any(1).sum())
            summary["repair"] = {"points_outside_triangle": outside, "outside": "statistics extrapolated affinely "
                                 "from the three anchors', a target std below zero clamped to zero"}
        curve_arrays = {}
        if path is not None:
            curve_arrays, curve_summary = project_curve(basis, path)
            summary.update(curve_summary)
        result = PlaneResult(xs, ys, {m: values[m].reshape(grid, grid) for m in METRICS}, anchors_xy, summary,
                             curve_arrays)
        plot_plane(result, out / "plane.png")
        result.save(out)
        finish_partial(out)
    return result


def ensemble(curve=None, points: int = 5, out=None, simplex=None, seed: int | None = None, data_dir: str | None = None,
             device: str = "auto", force: bool = False, progress: bool = True, speed: Speed = EAGER) -> SpanEnsemble:
    """Ensemble of `points` networks of a curve run (evenly spaced t) or a simplex run (points drawn
    uniformly, `seed`): ensemble.json (default in the run folder)."""
    if (curve is None) == (simplex is None):
        raise ModeconnError("give either --curve RUN or --simplex RUN: the ensemble's members come from one of them")
    points = validate.positive_int("--points", points)
    if curve is not None and seed is not None:
        raise ModeconnError("--seed draws a simplex's members; a curve's members are evenly spaced in t and drawn "
                            "from nothing: leave --seed out, or use --simplex")
    seed = validate.nonnegative_int("--seed", 0 if seed is None else seed)
    run = curve if curve is not None else simplex
    if curve is not None:
        read_curve_run(curve)
    else:
        read_simplex_run(simplex)
    data_dir = validate.data_dir(data_dir)
    out = validate.output_file("--out", out if out is not None else Path(run) / "ensemble.json")
    check_unfinished(out.parent, out.name, force=force)
    dev = join(device)
    with claim_output(out.parent, out.name, force=force):
        if curve is not None:
            path, _, data = load_curve(curve, dev, data_dir)
            result = curve_ensemble(path, data, points, progress=progress, speed=speed)
            where = {"curve": str(curve)}
        else:
            shape, _, data = load_simplex(simplex, dev, data_dir)
            result = simplex_ensemble(shape, data, points, seed, progress=progress, speed=speed)
            where = {"simplex": str(simplex), "seed": seed}
        write_json(out, {**result.to_json(), **where, "points": points, "out": str(out)})
    return result


SIMPLEX_PARTIAL = "simplex_eval.partial.npz"


def eval_simplex(run, samples: int = 50, seed: int = 0, out=None, bn_samples: int | None = None,
                 train_samples: int | None = None, batch_size: int = 1000, data_dir: str | None = None,
                 device: str = "auto", force: bool = False, progress: bool = True, speed: Speed = EAGER) -> dict:
    """Metrics at points drawn uniformly from a simplex run, and their distribution: simplex_eval.json
    (in the run folder or OUT). Resumable and sharded like a plane's grid."""
    samples = validate.positive_int("--samples", samples)
    seed = validate.nonnegative_int("--seed", seed)
    info = read_simplex_run(run)
    settings = eval_settings(info.wd, batch_size, bn_samples, train_samples)
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out if out is not None else run)
    check_unfinished(out, "simplex_eval.json", force=force)
    dev = join(device)
    shape, info, data = load_simplex(run, dev, data_dir)
    gen = torch.Generator().manual_seed(seed)
    weights = np.array([shape.sample_weights(gen) for _ in range(samples)])
    vertices = shape.control_points().detach()
    fingerprint = json.dumps({"run": str(Path(run).resolve()), "samples": samples, "seed": seed,
                              "bn_samples": settings.bn_samples, "train_samples": settings.train_samples},
                             sort_keys=True)
    with claim_output(out, "simplex_eval.json", force=force,
                      check=lambda o: read_partial(o, SIMPLEX_PARTIAL, fingerprint, samples, force)):
        evaluator = PointEvaluator(shape.control_model(0), data, settings, speed=speed)
        values = measure_grid(out, weights, lambda w: torch.as_tensor(w, dtype=vertices.dtype, device=vertices.device)
                              @ vertices, evaluator, fingerprint, force, progress, SIMPLEX_PARTIAL)
        result = {"run": str(run), "samples": samples, "seed": seed, "settings": settings.__dict__,
                  "batchnorm": batchnorm_note(shape.net),
                  "weights": weights.tolist(),
                  **{m: values[m].tolist() for m in METRICS},
                  "summary": {m: _distribution(values[m]) for m in METRICS}}
        write_json(out / "simplex_eval.json", result)
        if shape.num_points == 3:  # a triangle: its heat map
            plot_triangle(weights, values["test_err"], _vertex_errors(info), out / "simplex_eval.png")
        finish_partial(out, SIMPLEX_PARTIAL)
    return result


def _vertex_errors(info) -> list[float] | None:
    """The vertices' test errors as the simplex run measured them (BN recomputed), where it holds them."""
    metrics = info.raw.get("metrics")
    try:
        return [float(metrics[f"vertex{k}"]["test_err"]) for k in range(3)]
    except (KeyError, TypeError, ValueError):
        return None


def _distribution(values: np.ndarray) -> dict:
    """Mean, spread and quantiles of one metric over the sampled points."""
    q05, median, q95 = np.quantile(values, [0.05, 0.5, 0.95])
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()), "q05": float(q05),
            "median": float(median), "q95": float(q95), "max": float(values.max())}
