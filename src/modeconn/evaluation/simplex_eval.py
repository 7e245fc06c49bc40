"""The record of metrics at points drawn from a simplex (simplex_eval.json) and their distribution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModeconnError
from ..storage.record import Record
from .pointwise import METRICS


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

    def to_json(self) -> dict:  # the metrics lie at the top level, as the first release wrote them
        return {"run": self.run, "samples": self.samples, "seed": self.seed, "settings": self.settings,
                "batchnorm": self.batchnorm, "weights": self.weights, **self.metrics, "summary": self.summary}

    @classmethod
    def from_json(cls, obj, source: str) -> SimplexEval:
        try:
            result = cls(obj["run"], obj["samples"], obj["seed"], obj["settings"], obj["batchnorm"], obj["weights"],
                         {m: obj[m] for m in METRICS}, obj["summary"])
            rows: list[list] = [result.weights, *result.metrics.values()]
            if any(len(v) != result.samples for v in rows):
                raise ValueError("weights or metrics do not hold `samples` rows")
            for m in METRICS:
                result.summary[m]["mean"], result.summary[m]["q95"]
        except (TypeError, KeyError, ValueError) as exc:
            raise ModeconnError(f"{source} is not a simplex evaluation (missing or malformed {exc}); rerun "
                                "`modeconn eval-simplex`") from None
        return result

    def describe(self) -> str:
        t = self.summary["test_err"]
        return (f"{self.samples} points: test error mean {t['mean']:.4f}, 5-95% {t['q05']:.4f}..{t['q95']:.4f}, "
                f"max {t['max']:.4f}")
