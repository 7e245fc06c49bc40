"""`modeconn connectivity`: is the barrier a symmetry? Plain, aligned and REPAIRed lines, optionally curves."""
from __future__ import annotations

from dataclasses import dataclass

from ..alignment.connectivity import PathsResult, compare_paths
from ..core.families import FAMILIES
from ..errors import ModeconnError
from ..recipes import recipe_for
from ..reporting.plots import plot_along
from ..storage.runfolder import describe_endpoints, load_endpoints
from . import validate
from .common import RunFolder, eval_settings, path_points, training_config
from .options import REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class ConnectivityOptions(EvalOptions):
    start: str = option(REQUIRED, "network a", positional=True)
    end: str = option(REQUIRED, "network b", positional=True)
    out: str = option(REQUIRED, "the folder to write paths.json and paths.png in")
    points: int = option(61, "evenly spaced t in [0, 1] (paper: 61)")
    curve: str | None = option(None, "also train a curve to END and one to the weight-aligned END",
                               choices=tuple(FAMILIES))
    epochs: int | None = option(None, "curve training epochs (default: the recipe's)")
    lr: float | None = option(None, "curve learning rate (default: the recipe's)")


def _summary(result: PathsResult, o: ConnectivityOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/paths.json and paths.png"


@command("connectivity", ConnectivityOptions,
         help="plain vs weight- and activation-aligned lines, REPAIR, optional curves", summary=_summary)
def connectivity(o: ConnectivityOptions) -> PathsResult:
    """The plain line, the lines to END aligned by weights and by activations, REPAIR, and optionally curves:
    OUT/paths.json and paths.png."""
    points = path_points(o.points)
    if o.curve is not None and o.curve not in FAMILIES:
        raise ModeconnError(f"unknown --curve {o.curve!r}: choose one of {', '.join(FAMILIES)}")
    if o.curve is None and (o.epochs is not None or o.lr is not None):
        raise ModeconnError("--epochs and --lr set the training of the curves that --curve adds: without --curve "
                            "nothing is trained; add --curve bezier or leave them out")
    sources = describe_endpoints([o.start, o.end])
    settings = eval_settings(sources[0].wd, o.batch_size, o.bn_samples, o.train_samples)
    cfg = training_config(recipe_for(sources[0].dataset).connect, o.epochs, o.lr) if o.curve else None
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out, "paths.json", force=o.force)
    dev = folder.join(o.device)
    ends = load_endpoints(sources, data_dir, dev)
    start_net, end_net = ends.nets  # START and END
    with folder.claim() as out:
        result = compare_paths(start_net, end_net, ends.data, settings, points, o.curve, cfg, o.progress, o.speed)
        result.start, result.end = str(o.start), str(o.end)
        plot_along(result, out / "paths.png", f"plain and aligned paths, {ends.dataset}")
        result.write(out)
    return result
