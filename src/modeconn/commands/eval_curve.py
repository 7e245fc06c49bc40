"""`modeconn eval-curve`: metrics along a curve and along the line between its endpoints."""
from __future__ import annotations

from dataclasses import dataclass

from ..alignment.repair import repairable_layers, repaired_points
from ..evaluation.along import PathEval, eval_path
from ..storage.runfolder import load_curve, read_curve_run
from . import validate
from .common import RunFolder, eval_settings, other_dataset, path_points, write_path_eval
from .options import OTHER_DATASET_HELP, REPAIR_HELP, REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class EvalCurveOptions(EvalOptions):
    run: str = option(REQUIRED, "a curve run folder (from connect)", positional=True)
    points: int = option(61, "evenly spaced t in [0, 1] (paper: 61)")
    out: str | None = option(None, "the folder to write in (default: the run folder)")
    dataset: str | None = option(None, OTHER_DATASET_HELP)
    repair: bool = option(False, REPAIR_HELP)


def _summary(result: PathEval, o: EvalCurveOptions) -> str:
    return f"{result.describe()}\nwrote {o.out or o.run}/curve_eval.json and .png"


@command("eval-curve", EvalCurveOptions, help="metrics along a curve and along the line between its endpoints",
         summary=_summary)
def eval_curve(o: EvalCurveOptions) -> PathEval:
    """Metrics along a curve run and the line between its endpoints: curve_eval.json and .png (in the run folder
    or OUT)."""
    points = path_points(o.points)
    info = read_curve_run(o.run)
    settings = eval_settings(info.wd, o.batch_size, o.bn_samples, o.train_samples)
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out if o.out is not None else o.run, "curve_eval.json", force=o.force)
    dev = folder.join(o.device)
    curve, info, data = load_curve(o.run, dev, data_dir, o.dataset)
    assert info.curve is not None, "read_run gives every curve run its CurveSpec"
    if o.repair:
        repairable_layers(curve.model_at(0.0), data.example_input())
    with folder.claim() as out:
        result = eval_path(curve, curve.model_at(0.0), curve.model_at(1.0), data, points, settings, o.progress,
                           o.speed, repaired_points(settings.bn_batches(data), data.task) if o.repair else None)
        result.run = str(o.run)
        result.settings.update(other_dataset(o.dataset))
        write_path_eval(out, result, f"{info.curve.kind} curve vs line, {o.dataset or info.dataset}")
    return result
