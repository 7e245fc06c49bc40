"""The record of metrics at points drawn from a simplex (simplex_eval.json) and their distribution."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.simplex import Simplex
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..runtime.speed import EAGER, Speed
from ..storage.partial import fingerprint_of
from ..storage.record import Record
from ..tasks import headline, metric_label
from .batchnorm import batchnorm_note
from .pointwise import EvalSettings, PointEvaluator, measure_points, metric_names, metrics_store, task_settings

PARTIAL = "simplex_eval.partial.npz"


def distribution(values: np.ndarray) -> dict[str, float]:
    """Mean, spread and quantiles of one metric over the sampled points."""
    q05, median, q95 = np.quantile(values, [0.05, 0.5, 0.95])
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()), "q05": float(q05),
            "median": float(median), "q95": float(q95), "max": float(values.max())}


@dataclass
class SimplexEval(Record):
    """What simplex_eval.json holds: the barycentric `weights` ((samples, vertices)) of points drawn uniformly
    (Dirichlet(1)) from a simplex with `seed`, every metric at each (`metrics[m]`, length samples), and per
    metric its distribution (`summary[m]`: mean, std, min, q05, median, q95, max)."""

    run: str
    samples: int
    seed: int
    settings: dict
    batchnorm: str
    weights: list[list[float]]
    metrics: dict[str, list[float]]
    summary: dict[str, dict[str, float]]

    kind = "simplex_eval"
    file = "simplex_eval.json"
    what = "a simplex evaluation"
    made_by = "eval-simplex"

    def to_json(self) -> dict:  # the metrics lie at the top level, as the first release wrote them
        return {"run": self.run, "samples": self.samples, "seed": self.seed, "settings": self.settings,
                "batchnorm": self.batchnorm, "weights": self.weights, **self.metrics, "summary": self.summary}

    @classmethod
    def from_json(cls, obj, source: str) -> SimplexEval:
        with cls.parsing(source):
            result = cls(obj["run"], obj["samples"], obj["seed"], obj["settings"], obj["batchnorm"], obj["weights"],
                         {m: obj[m] for m in metric_names(obj)}, obj["summary"])
            rows: list[list] = [result.weights, *result.metrics.values()]
            if any(len(v) != result.samples for v in rows):
                raise ValueError("weights or metrics do not hold `samples` rows")
            for m in ("train_loss", "test_loss", *result.metrics):
                result.summary[m]["mean"], result.summary[m]["q95"]
        return result

    def describe(self) -> str:
        h = headline(self.metrics)
        t = self.summary[h]
        return (f"{self.samples} points: {metric_label(h)} mean {t['mean']:.4f}, 5-95% {t['q05']:.4f}..{t['q95']:.4f}, "
                f"max {t['max']:.4f}")


def measure_simplex(simplex: Simplex, data: DataSource, settings: EvalSettings | None = None, samples: int = 50,
                    seed: int = 0, *, store: Path | None = None, fingerprint: str = "", force: bool = False,
                    progress: bool = True, speed: Speed = EAGER) -> SimplexEval:
    """Metrics (BN recomputed per point) at `samples` points drawn uniformly (Dirichlet(1), from `seed`, on the
    CPU: the same draws on any device) from a simplex or complex, and each metric's distribution over them
    (Wortsman et al. 2021; Benton et al. 2021, Fig. 4). Returns a SimplexEval; its `run` is empty (the command
    names the run).

    With `store` (a folder) the measured points are saved after each round under `fingerprint` and a rerun
    measures only the missing ones; without it nothing is written. Under torchrun each rank measures whole
    points. Raises ModeconnError for samples < 1.
    """
    if not isinstance(simplex, Simplex):
        raise ModeconnError(f"measure_simplex measures a Simplex (a simplex run, or mc.Simplex), got "
                            f"{type(simplex).__name__}; for a curve use eval_path")
    if samples < 1:
        raise ModeconnError(f"{param('samples')} must be >= 1, got {samples}")
    settings = settings or EvalSettings()
    gen = torch.Generator().manual_seed(seed)
    weights = np.array([simplex.sample_weights(gen) for _ in range(samples)])
    vertices = simplex.control_points().detach()
    evaluator = PointEvaluator(simplex.control_model(0), data, settings, speed=speed)
    rows = metrics_store(store, PARTIAL, fingerprint_of(fingerprint, samples=samples, seed=seed,
                                                        settings=settings.__dict__, **task_settings(data.task)),
                         samples, force, evaluator.metrics)
    values = measure_points(weights, lambda w: torch.as_tensor(w, dtype=vertices.dtype, device=vertices.device)
                            @ vertices, evaluator, rows, progress)
    rows.finish()  # done: a later call measures afresh
    return SimplexEval("", samples, seed, {**settings.__dict__, **task_settings(data.task)},
                       batchnorm_note(simplex.net), weights.tolist(),
                       {m: values[m].tolist() for m in evaluator.metrics},
                       {m: distribution(values[m]) for m in evaluator.metrics})
