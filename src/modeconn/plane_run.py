"""`modeconn plane`: metrics over a grid in the plane through three networks or a curve, resumable."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import atomic_write, make_dir, read_json, remove_file, write_json
from .data import load_dataset
from .errors import ModeconnError
from .flat import check_same_architecture, parameters_vector
from .plane import PlaneBasis, grid_axes, plane_basis
from .pointwise import METRICS, EvalSettings, PointEvaluator, measure_shared
from .runs import load_curve, load_network, network_info, resolve_device

CURVE_POINTS = 61
PARTIAL = "plane.partial.npz"
# Points each rank evaluates between saves of PARTIAL: amortizes the save and the gather across
# ranks (per-point rounds cost 25% on MNIST-1D under torchrun); a killed run redoes at most one round.
ROUND_POINTS = 8


def _save_npz(path: Path, arrays: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def _load_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise ModeconnError(f"{path} is truncated or corrupt ({exc}); delete it to start the grid again") from None


def _anchors(points, curve_run, bend, device, data_dir=None):
    """The three weight vectors, a template network, the dataset, its wd, and the curve if any."""
    if (points is None) == (curve_run is None):
        raise ModeconnError("give either --points A B C or --curve RUN")
    if curve_run is not None:
        curve, info, data = load_curve(curve_run, device, data_dir)
        bends = curve.num_points - 2
        if bends < 1:
            raise ModeconnError(f"{curve_run} is a line (0 bends): it spans no plane; use --points with a third network")
        k = (bends + 1) // 2 if bend is None else bend
        if not 1 <= k <= bends:
            raise ModeconnError(f"--bend must be between 1 and {bends} for {curve_run}, got {bend}")
        cp = curve.control_points().detach()
        return (cp[0], cp[-1], cp[k]), curve.model_at(0.0), data, info["config"]["wd"], curve, k
    if len(points) != 3:
        raise ModeconnError(f"--points takes exactly three networks, got {len(points)}")
    infos = [network_info(p) for p in points]
    data = load_dataset(infos[0]["dataset"], data_dir or infos[0].get("data_dir")).to(device)
    nets = [load_network(p, data, i["model"], device) for p, i in zip(points, infos)]
    for p, net in zip(points[1:], nets[1:]):
        check_same_architecture(nets[0].state_dict(), net.state_dict(), what=(str(points[0]), str(p)))
    ws = tuple(parameters_vector(n).to(device) for n in nets)
    return ws, nets[0], data, infos[0].get("config", {}).get("wd", 0.0), None, None


def plane_run(out, points=None, curve_run=None, bend: int | None = None, grid: int = 21, margin: float = 0.2,
              bn_samples: int | None = None, train_samples: int | None = None, batch_size: int = 1000,
              chunk: int | None = None, device="auto", force: bool = False, progress: bool = True,
              data_dir: str | None = None) -> dict:
    """Evaluate the G x G grid and write plane.npz, plane.json and plane.png into `out`."""
    device = resolve_device(device)
    out = Path(out)
    if (out / "plane.json").exists() and not force:
        raise ModeconnError(f"{out} already holds a finished plane; pass --force to recompute or choose another --out")
    grid_axes(np.zeros((1, 2)), grid, margin)  # validate before any work
    (w1, w2, w3), template, data, wd, curve, bend = _anchors(points, curve_run, bend, device, data_dir)
    basis = plane_basis(w1, w2, w3)
    anchors_xy = basis.anchor_coords(w3)
    xs, ys = grid_axes(anchors_xy, grid, margin)
    coords = np.array([(x, y) for x in xs for y in ys])
    settings = EvalSettings(wd=wd, batch_size=batch_size, bn_samples=bn_samples, train_samples=train_samples)
    chunk = chunk or 1  # vmap measured slower on 2 CPU cores (benchmarks/plane.py); opt in with --chunk
    fingerprint = json.dumps({"sources": [str(p) for p in points] if points else str(curve_run), "bend": bend,
                              "grid": grid, "margin": margin, "bn_samples": bn_samples, "train_samples": train_samples,
                              "u_norm": round(basis.u_norm, 6), "v_norm": round(basis.v_norm, 6)}, sort_keys=True)

    make_dir(out)
    done = np.zeros(len(coords), dtype=bool)
    values = {m: np.full(len(coords), np.nan) for m in METRICS}
    if (out / PARTIAL).exists():
        saved = _load_npz(out / PARTIAL)
        if str(saved["fingerprint"]) != fingerprint and not force:
            raise ModeconnError(f"{out / PARTIAL} was started with other settings; rerun the same command, "
                                "choose another --out, or pass --force to start over")
        if str(saved["fingerprint"]) == fingerprint:
            done = saved["done"]
            values = {m: saved[m] for m in METRICS}

    evaluator = PointEvaluator(template, data, settings, chunk=chunk)
    todo = np.flatnonzero(~done)
    bar = tqdm(total=len(coords), initial=int(done.sum()), desc="plane", disable=not progress, dynamic_ncols=True)
    step = max(chunk, ROUND_POINTS) * distributed.world_size()
    for start in range(0, len(todo), step):
        idx = todo[start:start + step]
        rows = measure_shared(len(idx), lambda local: evaluator.many(basis.points(coords[idx[local]])),
                              data.test_x.device)
        for j, m in enumerate(METRICS):
            values[m][idx] = rows[:, j]
        done[idx] = True
        _save_npz(out / PARTIAL, {"done": done, "fingerprint": np.array(fingerprint), **values})
        bar.update(len(idx))
    bar.close()
    return _finish(out, basis, xs, ys, anchors_xy, values, curve, bend, settings, grid, margin, points, curve_run, chunk)


def _finish(out, basis: PlaneBasis, xs, ys, anchors_xy, values, curve, bend, settings, grid, margin,
            points, curve_run, chunk) -> dict:
    G = len(xs)
    arrays = {"xs": xs, "ys": ys, "points_xy": anchors_xy, **{m: values[m].reshape(G, G) for m in METRICS}}
    summary = {"u_norm": basis.u_norm, "v_norm": basis.v_norm, "orthogonality_error": basis.orthogonality_error(),
               "settings": {"grid": grid, "margin": margin, "chunk": chunk, **settings.__dict__},
               "sources": [str(p) for p in points] if points else {"curve": str(curve_run), "bend": bend},
               "points_xy": anchors_xy.tolist(),
               "grid_index": "metric[i, j] is at (xs[i], ys[j])"}
    if curve is not None:
        ts = np.linspace(0, 1, CURVE_POINTS)
        with torch.no_grad():
            proj = [basis.project(curve.weights(float(t)).detach()[None]) for t in ts]
            bend_proj = basis.project(curve.control_points().detach()[1:-1])
        arrays["curve_t"] = ts
        arrays["curve_xy"] = np.concatenate([p[0] for p in proj])
        arrays["bends_xy"] = bend_proj[0]
        dist = np.concatenate([p[1] for p in proj])
        summary["curve_distance_to_plane"] = dist.tolist()
        summary["curve_max_distance_to_plane"] = float(dist.max())
        summary["curve_max_distance_relative"] = float(dist.max() / basis.u_norm)
        summary["bends_distance_to_plane"] = bend_proj[1].tolist()
    _save_npz(out / "plane.npz", arrays)
    from .plots import plot_plane

    plot_plane(arrays, out / "plane.png")
    write_json(out / "plane.json", summary)
    remove_file(out / PARTIAL)
    return {"arrays": arrays, "summary": summary}


def load_plane(out) -> tuple[dict, dict]:
    """Read a finished plane folder: its arrays and its summary."""
    out = Path(out)
    return _load_npz(out / "plane.npz"), read_json(out / "plane.json")
