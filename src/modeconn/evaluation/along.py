"""Metrics along a curve and along the straight line between its endpoints, with barriers."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..core.curve import Curve
from ..core.flat import parameters_vector
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..runtime.speed import EAGER, Speed
from ..storage.record import Record
from ..tasks import CLASSIFICATION, headline, metric_label
from .batchnorm import has_batchnorm
from .pointwise import EvalSettings, PointEvaluator, measure_shared


@dataclass
class PathEval(Record):
    """What curve_eval.json / line_eval.json hold: metrics at each t along the line (and the curve), summaries.

    `curve` and `line` map each metric to its values at `t`; `summary` holds per path and metric
    min, max, mean, arc_mean and barrier, plus `length` and `barriers`. `run` names the curve
    run (eval-curve); `start` and `end` the two networks (eval-line). A measurement is a `CurveEval`
    (kind curve_eval) when it holds a curve and a `LineEval` (kind line_eval) otherwise.
    """

    t: list[float]
    settings: dict
    line: dict[str, list[float]]
    summary: dict
    curve: dict[str, list[float]] | None = None
    run: str | None = None
    start: str | None = None
    end: str | None = None

    @property
    def headline(self) -> str:
        """The metric the summary leads with: test_err for classification, test_loss where there is no error."""
        return headline(self.line)

    def paths(self) -> list[str]:
        """The paths measured, curve first when there is one."""
        return (["curve"] if self.curve is not None else []) + ["line"]

    def values(self, path: str, metric: str) -> list[float]:
        return getattr(self, path)[metric]

    def stat(self, path: str, metric: str, what: str) -> float:
        """One summary figure: what is min, max, mean, arc_mean or barrier."""
        return self.summary[path][metric][what]

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, obj, source: str):
        if cls is PathEval:  # either file: the record's class follows what it holds
            cls = CurveEval if isinstance(obj, dict) and obj.get("curve") is not None else LineEval
        def broken(what: str) -> ModeconnError:
            return ModeconnError(f"{source} is not a curve or line evaluation ({what}); rerun eval-curve or "
                                 "eval-line")

        if not isinstance(obj, dict):
            raise broken(f"it holds a {type(obj).__name__}, not an object")
        missing = [k for k in ("t", "settings", "line", "summary") if k not in obj]
        if missing:
            raise broken(f"no {', '.join(missing)}")
        t = obj["t"]
        if not isinstance(t, list) or len(t) < 2 or not all(_finite(x) for x in t):
            raise broken("t must list at least two finite numbers")
        for path in ("line", "curve"):
            arrays = obj.get(path)
            if arrays is None and path == "curve":
                continue
            if not isinstance(arrays, dict) or any(
                    not isinstance(v, list) or len(v) != len(t) or not all(_finite(x) for x in v)
                    for v in arrays.values()) or "test_loss" not in arrays:
                raise broken(f"{path} must map each metric to {len(t)} finite numbers, one per t")
        try:
            given: dict[str, Any] = {f.name: obj.get(f.name) for f in fields(cls)}
            result = cls(**given)
            for path in result.paths():
                result.stat(path, result.headline, "max")
            result.summary["length"], result.summary["barriers"]
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise broken(f"its summary lacks {exc}") from None
        if (result.curve is None) != (cls is LineEval):
            raise ModeconnError(f"{source} holds {'no' if result.curve is None else 'a'} curve, so it is not a "
                                f"{cls.kind} file; rerun {'eval-curve' if cls is CurveEval else 'eval-line'}")
        return result

    @classmethod
    def measured(cls, **fields_) -> PathEval:
        """The record of a measurement: a CurveEval when it holds a curve, a LineEval otherwise."""
        return (CurveEval if fields_.get("curve") is not None else LineEval)(**fields_)


class CurveEval(PathEval):
    """Metrics along a curve and the line between its endpoints (curve_eval.json, `modeconn eval-curve`)."""

    kind = "curve_eval"
    file = "curve_eval.json"

    def describe(self) -> str:
        m = self.headline
        return (f"{metric_label(m)} max: curve {self.stat('curve', m, 'max'):.4f}, line "
                f"{self.stat('line', m, 'max'):.4f}; {metric_label(m).replace(' ', '-')} barrier: curve "
                f"{self.stat('curve', m, 'barrier'):.4f}, line {self.stat('line', m, 'barrier'):.4f}")


class LineEval(PathEval):
    """Metrics along the straight line between two networks (line_eval.json, `modeconn eval-line`)."""

    kind = "line_eval"
    file = "line_eval.json"

    def describe(self) -> str:
        m = self.headline
        return (f"line: {metric_label(m)} max {self.stat('line', m, 'max'):.4f}, "
                f"{metric_label(m).replace(' ', '-')} barrier {self.stat('line', m, 'barrier'):.4f}, "
                f"train-loss barrier "
                f"{self.stat('line', 'train_loss', 'barrier'):.4f}")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def barrier(values, t) -> float:
    """max_t [m(t) - ((1 - t) m(0) + t m(1))] (Frankle et al. 2020): 0 when nothing rises above the chord."""
    values, t = np.asarray(values, dtype=float), np.asarray(t, dtype=float)
    chord = (1 - t) * values[0] + t * values[-1]
    return float(np.max(values - chord))


def arc_weighted_mean(values, chords) -> float:
    """Mean of values over arc length, trapezoid rule on the chords between consecutive points."""
    values, chords = np.asarray(values, dtype=float), np.asarray(chords, dtype=float)
    if chords.sum() == 0:
        return float(values.mean())
    return float(np.sum(chords * (values[1:] + values[:-1]) / 2) / chords.sum())


def mean_barrier(values) -> float:
    """max_t m(t) - (m(0) + m(1)) / 2 (Git Re-Basin's convention: the endpoints' mean, not the chord)."""
    values = np.asarray(values, dtype=float)
    return float(np.max(values) - (values[0] + values[-1]) / 2)


def summarize(arrays: dict[str, list[float]], t, chords) -> dict:
    """min, max, mean, arc-length-weighted mean and both barriers (chord, endpoints' mean) of each metric."""
    return {m: {"min": float(np.min(v)), "max": float(np.max(v)), "mean": float(np.mean(v)),
                "arc_mean": arc_weighted_mean(v, chords), "barrier": barrier(v, t), "mean_barrier": mean_barrier(v)}
            for m, v in arrays.items()}


@torch.no_grad()
def chord_lengths(path: Curve, ts) -> list[float]:
    """Distances between consecutive points phi(t_i), phi(t_i+1), holding two points at a time."""
    prev, out = None, []
    for t in ts:
        w = path.weights(float(t))
        if prev is not None:
            out.append(float((w - prev).double().norm()))
        prev = w
    return out


@torch.no_grad()
def metrics_along(path: Curve, ts, data: DataSource, settings: EvalSettings, progress: bool = True,
                  desc: str = "eval", speed: Speed = EAGER, point_model=None) -> dict[str, list[float]]:
    """Metrics at each t of `path` (BN recomputed per point); under torchrun each rank takes whole points.

    `point_model(t)`, when given, supplies the network measured at t instead of phi(t) itself
    (e.g. REPAIR's corrected point, `alignment.repair.repaired_points`).
    """
    evaluator = PointEvaluator(path.model_at(0.0), data, settings, speed=speed)

    def at(t: float):
        if point_model is None:
            return evaluator(*path.point(t))
        return evaluator(parameters_vector(point_model(t)))

    def measure(indices):
        bar = tqdm(indices, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
        return [at(float(ts[i])) for i in bar]

    rows = measure_shared(len(ts), measure, data.device, evaluator.metrics)
    return {m: rows[:, j].tolist() for j, m in enumerate(evaluator.metrics)}


def line_between(start: nn.Module, end: nn.Module) -> Curve:
    """The straight segment between two networks, as a 0-bend curve."""
    return Curve(start, end, kind="polychain", bends=0)


def eval_path(curve: Curve | None, start: nn.Module, end: nn.Module, data: DataSource, points: int = 61,
              settings: EvalSettings | None = None, progress: bool = True, speed: Speed = EAGER,
              corrected=None) -> PathEval:
    """Metrics along the curve (if given) and the line between `start` and `end`, with summaries.

    `corrected(path)`, when given, returns each path's `point_model` (e.g. REPAIR's `repaired_points`).
    Raises ModeconnError for fewer than 2 points (t = 0 and t = 1 at least).
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ModeconnError(f"{param('points')} must be an integer >= 2 (t = 0 and t = 1 at least), got {points!r}")
    settings = settings or EvalSettings()
    ts = np.linspace(0.0, 1.0, points)
    arrays: dict = {}
    summary: dict = {"length": {}}
    paths = ([("curve", curve)] if curve is not None else []) + [("line", line_between(start, end))]
    for name, path in paths:
        arrays[name] = metrics_along(path, ts, data, settings, progress, desc=f"eval {name}", speed=speed,
                                     point_model=corrected(path) if corrected is not None else None)
        summary[name] = summarize(arrays[name], ts, chord_lengths(path, ts))
        summary["length"][name] = path.length()
    summary["barriers"] = {name: {m: summary[name][m]["barrier"] for m in arrays[name]} for name, _ in paths}
    task = {} if data.task.name == CLASSIFICATION.name else {"task": data.task.name}  # classification: as before
    return PathEval.measured(t=ts.tolist(), settings={"points": points, "repair": corrected is not None,
                                             "batchnorm": has_batchnorm(start), **settings.__dict__, **task},
                    line=arrays["line"], summary=summary, curve=arrays.get("curve"))
