"""Is the barrier only a symmetry? The plain line next to the lines to b aligned by weights and by activations,
with REPAIR, and optionally curves to the plain and to the aligned b, all measured the same way."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from torch import nn

from ..config import TrainConfig
from ..core.curve import Curve
from ..data import DataSource
from ..errors import ModeconnError
from ..evaluation.along import chord_lengths, line_between, metrics_along, summarize
from ..evaluation.batchnorm import has_batchnorm
from ..evaluation.pointwise import EvalSettings, task_settings
from ..runtime.speed import EAGER, Speed
from ..storage.record import Record
from ..tasks import headline, metric_label
from ..training.train import train_curve
from .matching import align
from .repair import repairable_layers, repaired_points


@dataclass
class PathsResult(Record):
    """What paths.json holds: metrics at each t along every path, their summaries (both barrier conventions),
    the two alignments, and how each path was made."""

    t: list[float]
    arrays: dict[str, dict[str, list[float]]]
    summary: dict
    settings: dict
    align: dict
    start: str | None = None
    end: str | None = None

    kind = "paths"
    file = "paths.json"
    what = "a connectivity result"
    made_by = "connectivity"

    def paths(self) -> list[str]:
        return list(self.arrays)

    def values(self, path: str, metric: str) -> list[float]:
        return self.arrays[path][metric]

    def stat(self, path: str, metric: str, what: str) -> float:
        """One summary figure: min, max, mean, arc_mean, barrier (chord) or mean_barrier (endpoints' mean)."""
        return self.summary[path][metric][what]

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, obj, source: str) -> PathsResult:
        with cls.parsing(source):
            result = cls(**{f.name: obj[f.name] for f in fields(cls)})
            for path in result.paths():
                result.stat(path, result.headline, "mean_barrier"), result.values(path, result.headline)[0]
        return result

    @property
    def headline(self) -> str:
        """The metric the summary leads with: test_err for classification, test_loss where there is no error."""
        return headline(next(iter(self.arrays.values()), {}))

    def describe(self) -> str:
        lead = self.headline
        return "\n".join(f"  {name:22} {metric_label(lead).replace(' ', '-')} barrier "
                         f"{self.stat(name, lead, 'barrier'):.4f}, train-loss barrier "
                         f"{self.stat(name, 'train_loss', 'barrier'):.4f}" for name in self.paths())


def repair_note(model: nn.Module, example_input) -> str | None:
    """None where REPAIR applies; otherwise why the REPAIR path is left out."""
    if has_batchnorm(model):
        return "BatchNorm: every point's statistics are recomputed already (REPAIR's reset form)"
    try:
        repairable_layers(model, example_input)
    except ModeconnError as exc:
        return str(exc)
    return None


def compare_paths(a: nn.Module, b: nn.Module, data: DataSource, settings: EvalSettings, points: int = 61,
                  curve: str | None = None, curve_config: TrainConfig | None = None, progress: bool = True,
                  speed: Speed = EAGER) -> PathsResult:
    """Align b to a both ways and measure the plain, weight-matched, activation-matched and REPAIRed lines
    (and, with `curve`, a curve to b and one to the weight-matched b, trained with `curve_config`)."""
    example = data.example_input()
    batches = settings.bn_batches(data)
    b_weights, info_w = align(a, b, "weights", example_input=example)
    b_activations, info_a = align(a, b, "activations", batches=batches, example_input=example, task=data.task)
    paths = {"line": (line_between(a, b), False), "weights_line": (line_between(a, b_weights), False),
             "activations_line": (line_between(a, b_activations), False)}
    note = repair_note(a, example)
    if note is None:
        paths["weights_line_repair"] = (line_between(a, b_weights), True)
    if curve is not None:
        for name, end in (("curve", b), ("weights_curve", b_weights)):
            path = Curve(a, end, kind=curve, bends=1).to(example.device)
            train_curve(path, data, curve_config or TrainConfig(), progress=progress, desc=f"connect {name}",
                        speed=speed)
            paths[name] = (path, False)
    ts = np.linspace(0.0, 1.0, points)
    summary: dict[str, dict[str, Any]]
    arrays, summary = {}, {"length": {}}
    for name, (path, repair) in paths.items():
        arrays[name] = metrics_along(path, ts, data, settings, progress, desc=name, speed=speed,
                                     point_model=repaired_points(batches, data.task)(path) if repair else None)
        summary[name] = summarize(arrays[name], ts, chord_lengths(path, ts))
        summary["length"][name] = path.length()
    summary["barriers"] = {name: {m: {"chord": summary[name][m]["barrier"], "mean": summary[name][m]["mean_barrier"]}
                                  for m in arrays[name]} for name in paths}
    config = {"points": points, "curve": curve,
              "curve_config": (curve_config or TrainConfig()).to_dict() if curve else None,
              "repair": note or "REPAIR on the weight-matched line", **settings.__dict__, **task_settings(data.task)}
    return PathsResult(ts.tolist(), arrays, summary, config,
                       {"weights": info_w.to_dict(), "activations": info_a.to_dict()})
