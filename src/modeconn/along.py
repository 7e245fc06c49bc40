"""Metrics along a curve and along the straight line between its endpoints, with barriers."""
from __future__ import annotations


import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .curve import Curve
from .data import Dataset
from .pointwise import METRICS, EvalSettings, PointEvaluator, measure_shared


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


def summarize(arrays: dict[str, list[float]], t, chords) -> dict:
    """min, max, mean, arc-length-weighted mean and barrier of each metric."""
    return {m: {"min": float(np.min(v)), "max": float(np.max(v)), "mean": float(np.mean(v)),
                "arc_mean": arc_weighted_mean(v, chords), "barrier": barrier(v, t)} for m, v in arrays.items()}


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
def metrics_along(path: Curve, ts, data: Dataset, settings: EvalSettings, progress: bool = True,
                  desc: str = "eval") -> dict[str, list[float]]:
    """Metrics at each t of `path` (BN recomputed per point); under torchrun each rank takes whole points."""
    evaluator = PointEvaluator(path.model_at(0.0), data, settings)

    def measure(indices):
        bar = tqdm(indices, desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
        return [evaluator(*path.point(float(ts[i]))) for i in bar]

    rows = measure_shared(len(ts), measure, data.test_x.device)
    return {m: rows[:, j].tolist() for j, m in enumerate(METRICS)}


def line_between(start: nn.Module, end: nn.Module) -> Curve:
    """The straight segment between two networks, as a 0-bend curve."""
    return Curve(start, end, kind="polychain", bends=0)


def eval_path(curve: Curve | None, start: nn.Module, end: nn.Module, data: Dataset, points: int = 61,
              settings: EvalSettings | None = None, progress: bool = True) -> dict:
    """The curve_eval.json content: metrics along the curve (if given) and the line, with summaries."""
    settings = settings or EvalSettings()
    ts = np.linspace(0.0, 1.0, points)
    result: dict = {"t": ts.tolist(), "settings": {"points": points, **settings.__dict__}}
    summary: dict = {"length": {}}
    paths = ([("curve", curve)] if curve is not None else []) + [("line", line_between(start, end))]
    for name, path in paths:
        arrays = metrics_along(path, ts, data, settings, progress, desc=f"eval {name}")
        result[name] = arrays
        summary[name] = summarize(arrays, ts, chord_lengths(path, ts))
        summary["length"][name] = path.length()
    summary["barriers"] = {name: {m: summary[name][m]["barrier"] for m in METRICS} for name, _ in paths}
    result["summary"] = summary
    return result
