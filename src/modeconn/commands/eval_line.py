"""`modeconn eval-line`: metrics along the straight line between two networks (linear mode connectivity)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..alignment.repair import repairable_layers, repaired_points
from ..evaluation.along import PathEval, eval_path
from ..storage.runfolder import describe_endpoints, load_endpoints
from . import validate
from .common import RunFolder, eval_settings, fallback_model, other_dataset, path_points, write_path_eval
from .options import REPAIR_HELP, REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class EvalLineOptions(EvalOptions):
    start: str = option(REQUIRED, "network a (run folder or weights file)", positional=True)
    end: str = option(REQUIRED, "network b", positional=True)
    out: str | None = option(None, "the folder to write in (default: START-END-line beside START)")
    points: int = option(61, "evenly spaced t in [0, 1] (paper: 61)")
    dataset: str | None = option(None, "override the networks' dataset")
    model: str | None = option(None, "override the networks' model")
    repair: bool = option(False, REPAIR_HELP)


def line_out(start, end, out=None) -> Path:
    """Where eval-line writes: OUT, or START-END-line beside START."""
    return Path(out) if out is not None else Path(start).parent / f"{Path(start).stem}-{Path(end).stem}-line"


def _summary(result: PathEval, o: EvalLineOptions) -> str:
    return f"{result.describe()}\nwrote {line_out(o.start, o.end, o.out)}/line_eval.json and .png"


@command("eval-line", EvalLineOptions, help="metrics along the straight line between two networks", summary=_summary)
def eval_line(o: EvalLineOptions) -> PathEval:
    """Linear mode connectivity of two networks: line_eval.json and .png (in START-END-line beside START, or OUT)."""
    points = path_points(o.points)
    sources = describe_endpoints([o.start, o.end], o.dataset, validate.model_name(o.model),
                                 fallback_model(o.dataset))
    folder = RunFolder(line_out(o.start, o.end, o.out), "line_eval.json", force=o.force)
    data_dir = validate.data_dir(o.data_dir)
    settings = eval_settings(sources[0].wd, o.batch_size, o.bn_samples, o.train_samples)
    dev = folder.join(o.device)
    ends = load_endpoints(sources, data_dir, dev)
    if o.repair:
        repairable_layers(ends.nets[0], ends.data.example_input())
    start_net, end_net = ends.nets  # the two networks described above
    with folder.claim() as out:
        result = eval_path(None, start_net, end_net, ends.data, points, settings, o.progress, o.speed,
                           repaired_points(settings.bn_batches(ends.data), ends.data.task) if o.repair else None)
        result.start, result.end = str(o.start), str(o.end)
        result.settings.update(other_dataset(o.dataset))
        write_path_eval(out, result, f"line between {o.start} and {o.end}, {ends.dataset}")
    return result
