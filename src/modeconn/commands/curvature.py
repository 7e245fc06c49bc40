"""`modeconn curvature`: top Hessian eigenvalues and trace of the train loss along a curve and its line, or at a
network."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from torch import nn

from ..errors import ModeconnError
from ..evaluation.along import line_between
from ..evaluation.curvature import CurvatureResult, measure_curvature
from ..reporting.plots import plot_curvature
from ..storage.runfolder import describe_endpoints, load_curve, load_endpoints, read_run
from . import validate
from .common import RunFolder, eval_settings, other_dataset, path_points
from .options import OTHER_DATASET_HELP, REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class CurvatureOptions(EvalOptions):
    run: str = option(REQUIRED, "a curve run (its points and the line between its endpoints) or a network run",
                      positional=True)
    out: str | None = option(None, "the folder to write in (default: the run folder)")
    points: int | None = option(None, "evenly spaced t in [0, 1] along a curve (default 11)")
    top: int = option(3, "how many of the largest eigenvalues (Lanczos)")
    trace: bool = option(False, "also estimate the Hessian's trace (Hutch++)")
    probes: int | None = option(None, "Hessian-vector products for --trace (default 100)")
    steps: int = option(100, "at most this many Lanczos steps per point")
    seed: int = option(0, "seed of the Lanczos start and the trace's probes")
    dataset: str | None = option(None, OTHER_DATASET_HELP)


def _summary(result: CurvatureResult, o: CurvatureOptions) -> str:
    return f"{result.describe()}\nwrote {o.out or o.run}/curvature.json and curvature.png"


@command("curvature", CurvatureOptions, help="top Hessian eigenvalues and trace of the train loss along a curve, "
                                              "or at a network", summary=_summary)
def curvature(o: CurvatureOptions) -> CurvatureResult:
    """Curvature of the train loss at `points` t along a curve run and the line between its endpoints, or at
    one network: OUT/curvature.json and curvature.png (OUT defaults to the run folder).

    Eigenvalues by Lanczos (at most `steps` Hessian-vector products each), the trace by Hutch++ with
    `probes` products. A killed run restarted with the same command skips the points already measured.
    """
    run, points, probes = o.run, o.points, o.probes  # checked and given defaults below
    info = read_run(run)
    if info.kind not in ("curve", "network"):
        raise ModeconnError(f"{run} is a {info.kind} run: pass a network or a curve run")
    if info.kind == "network":
        if points is not None:
            raise ModeconnError("--points places points along a curve; a network run is measured at itself: "
                                "leave --points out")
        describe_endpoints([run])
        ts = [0.0]
    else:
        points = path_points(11 if points is None else points)
        ts = np.linspace(0.0, 1.0, points).tolist()
    top = validate.positive_int("--top", o.top)
    if probes is not None and not o.trace:
        raise ModeconnError("--probes sets the trace's Hessian-vector products: add --trace, or leave --probes out")
    probes = validate.positive_int("--probes", 100 if probes is None else probes)
    if o.trace and probes < 3:
        raise ModeconnError(f"--probes must be >= 3 for Hutch++ (a sketch, its trace, residual probes), got {probes}")
    steps = validate.positive_int("--steps", o.steps)
    if top > steps:
        raise ModeconnError(f"--top {top} needs --steps >= {top}: Lanczos finds at most one eigenvalue per step")
    seed = validate.nonnegative_int("--seed", o.seed)
    settings = eval_settings(info.wd, o.batch_size, o.bn_samples, o.train_samples)
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out if o.out is not None else run, "curvature.json", force=o.force)
    dev = folder.join(o.device)
    paths: dict[str, nn.Module]  # a curve and its line, measured at each t; or the network itself
    if info.kind == "curve":
        curve, _, data = load_curve(run, dev, data_dir, o.dataset)
        paths = {"curve": curve, "line": line_between(curve.model_at(0.0), curve.model_at(1.0))}
        dim = curve.param_space.size
    else:
        ends = load_endpoints(describe_endpoints([run], o.dataset), data_dir, dev)
        data, paths = ends.data, {"network": ends.nets[0]}
        dim = sum(p.numel() for p in ends.nets[0].parameters())
    if top > dim:
        raise ModeconnError(f"--top {top} is more eigenvalues than the network has parameters ({dim})")
    config = {"top": top, "trace": o.trace, "probes": probes if o.trace else None, "steps": steps, "seed": seed,
              **settings.__dict__, **other_dataset(o.dataset)}
    fingerprint = json.dumps({"run": str(run), "t": ts, **config}, sort_keys=True)
    with folder.claim() as out_dir:  # measure_curvature refuses a partial store of other settings before it writes
        result = measure_curvature(paths, ts, data, settings, top=top, trace=o.trace, probes=probes, steps=steps,
                                   seed=seed, store=out_dir, fingerprint=fingerprint, force=o.force,
                                   progress=o.progress, speed=o.speed)
        result.run = str(run)
        result.settings.update(other_dataset(o.dataset))
        plot_curvature(result.to_json(), out_dir / "curvature.png")
        result.write(out_dir)
    return result
