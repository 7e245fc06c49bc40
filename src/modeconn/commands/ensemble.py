"""`modeconn ensemble`: an ensemble of networks along a trained curve or drawn from a simplex."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModeconnError
from ..evaluation.ensemble import SpanEnsemble, curve_ensemble, simplex_ensemble
from ..storage.runfolder import load_curve, load_simplex, read_curve_run, read_simplex_run
from . import validate
from .common import RunFolder
from .options import OTHER_DATASET_HELP, DataOptions, option
from .registry import command


@dataclass
class EnsembleOptions(DataOptions):
    curve: str | None = option(None, "a curve run: members at evenly spaced t in [0, 1]")
    points: int = option(5, "members")
    out: str | None = option(None, "JSON file (default: RUN/ensemble.json)")
    simplex: str | None = option(None, "a simplex run: members drawn uniformly from it")
    seed: int | None = option(None, "seed of a simplex's draws (default 0; not for --curve)")
    dataset: str | None = option(None, OTHER_DATASET_HELP)
    force: bool = option(False, "replace an existing ensemble file")


def _summary(result: SpanEnsemble, o: EnsembleOptions) -> str:
    return result.describe()


@command("ensemble", EnsembleOptions, help="ensemble of networks along a trained curve or drawn from a simplex",
         summary=_summary)
def ensemble(o: EnsembleOptions) -> SpanEnsemble:
    """Ensemble of `points` networks of a curve run (evenly spaced t) or a simplex run (points drawn
    uniformly, `seed`): ensemble.json (default in the run folder)."""
    if (o.curve is None) == (o.simplex is None):
        raise ModeconnError("give either --curve RUN or --simplex RUN: the ensemble's members come from one of them")
    points = validate.positive_int("--points", o.points)
    if o.curve is not None and o.seed is not None:
        raise ModeconnError("--seed draws a simplex's members; a curve's members are evenly spaced in t and drawn "
                            "from nothing: leave --seed out, or use --simplex")
    seed = validate.nonnegative_int("--seed", 0 if o.seed is None else o.seed)
    run = o.curve if o.curve is not None else o.simplex
    assert run is not None, "checked above: exactly one of --curve and --simplex"
    if o.curve is not None:
        read_curve_run(o.curve)
    else:
        read_simplex_run(o.simplex)
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder.file(o.out if o.out is not None else Path(run) / "ensemble.json", force=o.force)
    assert folder.finished is not None, "RunFolder.file names its file as the finished one"
    out = folder.out / folder.finished
    dev = folder.join(o.device)
    with folder.claim():
        if o.curve is not None:
            path, _, data = load_curve(o.curve, dev, data_dir, o.dataset)
            result = curve_ensemble(path, data, points, progress=o.progress, speed=o.speed)
            result.curve = str(o.curve)
        else:
            shape, _, data = load_simplex(o.simplex, dev, data_dir, o.dataset)
            result = simplex_ensemble(shape, data, points, seed, progress=o.progress, speed=o.speed)
            result.simplex = str(o.simplex)
        result.out, result.dataset = str(out), o.dataset
        result.write(out.parent, out.name)
    return result
