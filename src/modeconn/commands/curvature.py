"""`modeconn curvature`: top Hessian eigenvalues and trace of the train loss along a curve and its line, or at a
network."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from ..core.curve import Curve
from ..errors import ModeconnError
from ..evaluation.along import line_between
from ..evaluation.curvature import Curvature, CurvatureResult, curvature_at, measure_curvature_shared
from ..evaluation.evaluate import has_batchnorm
from ..reporting.plots import plot_curvature
from ..runtime import distributed
from ..storage.files import read_json, remove_file, write_json
from ..storage.runfolder import describe_endpoints, load_curve, load_endpoints, read_run
from . import validate
from .common import RunFolder, eval_settings
from .options import REQUIRED, EvalOptions, option
from .registry import command

PARTIAL = "curvature.partial.json"


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
    run, out, points, top, trace, probes, steps = o.run, o.out, o.points, o.top, o.trace, o.probes, o.steps
    seed, bn_samples, train_samples, batch_size = o.seed, o.bn_samples, o.train_samples, o.batch_size
    data_dir, device, force, progress, speed = o.data_dir, o.device, o.force, o.progress, o.speed
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
        points = 11 if points is None else points
        if validate.positive_int("--points", points) < 2:
            raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
        ts = np.linspace(0.0, 1.0, points).tolist()
    top = validate.positive_int("--top", top)
    if probes is not None and not trace:
        raise ModeconnError("--probes sets the trace's Hessian-vector products: add --trace, or leave --probes out")
    probes = validate.positive_int("--probes", 100 if probes is None else probes)
    if trace and probes < 3:
        raise ModeconnError(f"--probes must be >= 3 for Hutch++ (a sketch, its trace, residual probes), got {probes}")
    steps = validate.positive_int("--steps", steps)
    if top > steps:
        raise ModeconnError(f"--top {top} needs --steps >= {top}: Lanczos finds at most one eigenvalue per step")
    seed = validate.nonnegative_int("--seed", seed)
    settings = eval_settings(info.wd, batch_size, bn_samples, train_samples)
    data_dir = validate.data_dir(data_dir)
    folder = RunFolder(out if out is not None else run, "curvature.json", force=force)
    dev = folder.join(device)
    paths: dict[str, Curve | None]  # a network run measures the network itself: its one path is None
    if info.kind == "curve":
        curve, _, data = load_curve(run, dev, data_dir)
        paths = {"curve": curve, "line": line_between(curve.model_at(0.0), curve.model_at(1.0))}
    else:
        ends = load_endpoints(describe_endpoints([run]), data_dir, dev)
        data, paths = ends.data, {"network": None}
        network = ends.nets[0]
    dim = curve.param_space.size if info.kind == "curve" else sum(p.numel() for p in network.parameters())
    if top > dim:
        raise ModeconnError(f"--top {top} is more eigenvalues than the network has parameters ({dim})")
    config = {"top": top, "trace": trace, "probes": probes if trace else None, "steps": steps, "seed": seed,
              **settings.__dict__}
    fingerprint = json.dumps({"run": str(run), "t": ts, **config}, sort_keys=True)
    train_batches, bn_batches = list(settings.train_batches(data)), list(settings.bn_batches(data))
    with folder.claim(check=lambda out: _resume(out, fingerprint, force, paths, len(ts))) as out_dir:
        done = _resume(out_dir, fingerprint, force, paths, len(ts))
        todo = [(name, i) for name in paths for i, row in enumerate(done.setdefault(name, [None] * len(ts)))
                if row is None]
        total = len(paths) * len(ts)
        bar = tqdm(total=total, initial=total - len(todo), desc="curvature", disable=not progress, dynamic_ncols=True)
        width = distributed.world_size()  # a round: one point per rank, then saved
        for start in range(0, len(todo), width):
            block = todo[start:start + width]

            def measure(j, block=block):  # called within this round (the default binds it all the same)
                name, i = block[j]
                path = paths[name]
                model = network if path is None else path.model_at(ts[i])
                return curvature_at(model, train_batches, bn_batches, top, trace, probes, steps, seed, speed=speed)

            for (name, i), r in zip(block, measure_curvature_shared(len(block), measure, top, data.train_x.device)):
                done[name][i] = r.to_dict()
            write_json(out_dir / PARTIAL, {"fingerprint": fingerprint, "done": done})
            bar.update(len(block))
        bar.close()
        bn = has_batchnorm(network if info.kind == "network" else curve.net)  # the template, not a new point
        result = CurvatureResult(str(run), info.kind, ts, done, config,
                                 "of the mean train cross-entropy over the training examples measured (weight "
                                 "decay's wd * I not included); eigenvalues are the largest algebraic, by Lanczos; "
                                 "the trace by Hutch++",
                                 "eval mode, with the statistics recomputed at each point" if bn else "none")
        plot_curvature(result.to_json(), out_dir / "curvature.png")
        result.write(out_dir)
        remove_file(out_dir / PARTIAL)
    return result


def _resume(out, fingerprint: str, force: bool, paths=(), points: int = 0) -> dict:
    """The points a killed run with the same settings measured ({path: [row or None] * points}); a corrupt
    partial, or another run's, is refused; `force` starts over whatever the file holds."""
    if force or not (out / PARTIAL).exists():
        return {}
    corrupt = ModeconnError(f"{out / PARTIAL} is truncated or corrupt, so the points it holds cannot be resumed; "
                            "pass --force to start over, or choose another --out")
    try:
        saved = read_json(out / PARTIAL)
    except ModeconnError:
        raise corrupt from None
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        raise ModeconnError(f"{out / PARTIAL} was started with other settings; rerun the same command, choose "
                            "another --out, or pass --force to start over")
    done = saved.get("done")
    if not isinstance(done, dict) or set(done) - set(paths) or any(
            not isinstance(rows, list) or len(rows) != points
            or any(row is not None and not _a_measured_point(row) for row in rows) for rows in done.values()):
        raise corrupt
    return done


def _a_measured_point(row) -> bool:
    """Whether a partial file's row reads back as a Curvature record of finite numbers."""
    try:
        record = Curvature(**row)  # exactly its fields, or TypeError
    except TypeError:
        return False
    if not isinstance(record.eigenvalues, list) or not record.eigenvalues or not isinstance(record.converged, bool) \
            or not isinstance(record.lanczos_steps, int) or record.lanczos_steps < 1:
        return False
    numbers = [*record.eigenvalues, record.train_loss] + ([record.trace] if record.trace is not None else [])
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in numbers)

