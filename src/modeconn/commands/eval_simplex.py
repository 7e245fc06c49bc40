"""`modeconn eval-simplex`: metrics at points drawn uniformly from a simplex, and their distribution."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..evaluation.evaluate import batchnorm_note
from ..evaluation.plane_grid import finish_partial, measure_grid, read_partial
from ..evaluation.pointwise import METRICS, PointEvaluator
from ..evaluation.simplex_eval import SimplexEval, distribution
from ..reporting.plots import plot_triangle
from ..storage.runfolder import load_simplex, read_simplex_run
from . import validate
from .common import RunFolder, eval_settings
from .options import REQUIRED, EvalOptions, option
from .registry import command

SIMPLEX_PARTIAL = "simplex_eval.partial.npz"


@dataclass
class EvalSimplexOptions(EvalOptions):
    run: str = option(REQUIRED, "a simplex run folder (from simplex)", positional=True)
    samples: int = option(50, "points drawn uniformly (Dirichlet(1)) from the simplex")
    seed: int = option(0, "seed of the draws")
    out: str | None = option(None, "the folder to write in (default: the run folder)")


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
    shape, info, data = load_simplex(o.run, dev, data_dir)
    gen = torch.Generator().manual_seed(seed)
    weights = np.array([shape.sample_weights(gen) for _ in range(samples)])
    vertices = shape.control_points().detach()
    fingerprint = json.dumps({"run": str(Path(o.run).resolve()), "samples": samples, "seed": seed,
                              "bn_samples": settings.bn_samples, "train_samples": settings.train_samples},
                             sort_keys=True)
    with folder.claim(check=lambda out: read_partial(out, SIMPLEX_PARTIAL, fingerprint, samples, o.force)) as out:
        evaluator = PointEvaluator(shape.control_model(0), data, settings, speed=o.speed)
        values = measure_grid(out, weights, lambda w: torch.as_tensor(w, dtype=vertices.dtype, device=vertices.device)
                              @ vertices, evaluator, fingerprint, o.force, o.progress, SIMPLEX_PARTIAL)
        result = SimplexEval(str(o.run), samples, seed, settings.__dict__, batchnorm_note(shape.net), weights.tolist(),
                             {m: values[m].tolist() for m in METRICS}, {m: distribution(values[m]) for m in METRICS})
        result.write(out)
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

