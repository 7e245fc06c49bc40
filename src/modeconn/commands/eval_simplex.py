"""`modeconn eval-simplex`: metrics at points drawn uniformly from a simplex, and their distribution."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..evaluation.simplex_eval import SimplexEval, measure_simplex
from ..reporting.plots import plot_triangle
from ..storage.runfolder import load_simplex, read_simplex_run
from ..tasks import headline
from . import validate
from .common import RunFolder, eval_settings, other_dataset
from .options import OTHER_DATASET_HELP, REQUIRED, EvalOptions, option
from .registry import command


@dataclass
class EvalSimplexOptions(EvalOptions):
    run: str = option(REQUIRED, "a simplex run folder (from simplex)", positional=True)
    samples: int = option(50, "points drawn uniformly (Dirichlet(1)) from the simplex")
    seed: int = option(0, "seed of the draws")
    out: str | None = option(None, "the folder to write in (default: the run folder)")
    dataset: str | None = option(None, OTHER_DATASET_HELP)


def _summary(result: SimplexEval, o: EvalSimplexOptions) -> str:
    return f"{result.describe()}\nwrote {o.out or o.run}/simplex_eval.json"


@command("eval-simplex", EvalSimplexOptions,
         help="metrics at points drawn uniformly from a simplex, and their distribution", summary=_summary)
def eval_simplex(o: EvalSimplexOptions) -> SimplexEval:
    """Metrics at points drawn uniformly from a simplex run, and their distribution: simplex_eval.json
    (in the run folder or OUT). Resumable and sharded like a plane's grid."""
    samples = validate.positive_int("--samples", o.samples)
    seed = validate.nonnegative_int("--seed", o.seed)
    info = read_simplex_run(o.run)
    settings = eval_settings(info.wd, o.batch_size, o.bn_samples, o.train_samples)
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out if o.out is not None else o.run, "simplex_eval.json", force=o.force)
    dev = folder.join(o.device)
    shape, info, data = load_simplex(o.run, dev, data_dir, o.dataset)
    fingerprint = json.dumps({"run": str(Path(o.run).resolve()), "samples": samples, "seed": seed,
                              "bn_samples": settings.bn_samples, "train_samples": settings.train_samples,
                              **other_dataset(o.dataset)},
                             sort_keys=True)
    with folder.claim() as out:  # measure_simplex refuses a partial store of other settings before it writes
        result = measure_simplex(shape, data, settings, samples, seed, store=out, fingerprint=fingerprint,
                                 force=o.force, progress=o.progress, speed=o.speed)
        result.run = str(o.run)
        result.settings.update(other_dataset(o.dataset))
        if shape.num_points == 3:  # a triangle: its heat map of the test error (the test loss without one)
            lead = headline(result.metrics)
            plot_triangle(np.array(result.weights), np.array(result.metrics[lead]), _vertex_values(info, lead),
                          out / "simplex_eval.png", metric=lead)
        result.write(out)
    return result


def _vertex_values(info, metric: str) -> list[float] | None:
    """The vertices' `metric` as the simplex run measured them (BN recomputed), where it holds them."""
    metrics = info.raw.get("metrics")
    try:
        return [float(metrics[f"vertex{k}"][metric]) for k in range(3)]
    except (KeyError, TypeError, ValueError):
        return None

