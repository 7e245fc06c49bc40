"""Figures as PNG files, written atomically.

Figures are `matplotlib.figure.Figure` objects drawn without pyplot: no global figure state and no
backend switch, so importing modeconn leaves a notebook's matplotlib as it was.
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ..storage.files import atomic_write
from ..tasks import headline, metric_label
from ..training.instability import deciding_metric

if TYPE_CHECKING:  # for annotations only: plotting needs no training code at run time
    from ..training.fge import FGEResult

STYLE = {"curve": dict(color="C0", lw=2, label="curve"), "line": dict(color="C3", lw=2, ls="--", label="line segment")}


def _style(name: str, k: int) -> dict:
    """How a path is drawn: the curve and line as always, any other path in its own colour."""
    others = ("C2", "C1", "C4", "C6", "C5", "C8", "C9", "C7")  # C0 and C3 are the curve's and the line's
    return STYLE.get(name, dict(color=others[k % len(others)], lw=2, label=name.replace("_", " ")))


def _subplots(*grid: int, **figure_options):
    """A Figure (options as `Figure` takes them) and its grid of axes, as pyplot.subplots gives, without pyplot."""
    fig = Figure(**figure_options)
    return fig, fig.subplots(*grid)


def _panels(names) -> list[tuple[str, str, float]]:
    """(metric, axis label, scale) of the two panels a result is drawn in: the train loss, and the test metric its
    summary leads with (`headline`): the error in percent for classification, the test loss otherwise."""
    names = list(names)
    lead = headline(names)
    if lead == "test_err":  # classification, drawn as it always was
        return [("train_loss", "train loss (cross-entropy)", 1), ("test_err", "test error (%)", 100)]
    return [("train_loss", "train loss", 1), (lead, metric_label(lead), 1)]


def save_figure(fig: Figure, path) -> None:
    """Write a figure as PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write(path, buf.getvalue())


def plot_along(result, path, title: str = "") -> None:
    """Train loss and test error along t (a PathEval or PathsResult), every path on the same axes, endpoints marked."""
    t = np.asarray(result.t)
    fig, axes = _subplots(1, 2, figsize=(11, 4))
    panels = _panels(result.summary[result.paths()[0]])  # a path's summary is keyed by its metrics
    for ax, (metric, label, scale) in zip(axes, panels):
        for k, name in enumerate(result.paths()):
            style = _style(name, k)
            v = np.asarray(result.values(name, metric)) * scale
            b = result.stat(name, metric, "barrier") * scale
            ax.plot(t, v, **{**style, "label": f"{style['label']} (barrier {b:.3g})"})
            ax.plot([t[0], t[-1]], [v[0], v[-1]], "o", color="k", ms=7, zorder=5)
        ax.set_xlabel("t (0 = start network, 1 = end network)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    fig.suptitle(title or "Along the curve vs the straight line (BatchNorm recomputed at each point)")
    save_figure(fig, path)


def _log_levels(z: np.ndarray, n: int = 20) -> np.ndarray:
    lo = max(float(np.nanmin(z)), 1e-4)
    hi = max(float(np.nanmax(z)), lo * 1.01)
    return np.geomspace(lo, hi, n)


def plot_plane(result, path) -> None:
    """Contours of train loss and test error over a measured plane (a PlaneResult), points and curve drawn on."""
    xs, ys = result.xs, result.ys
    fig, axes = _subplots(1, 2, figsize=(14, 5), layout="constrained")
    panels = _panels(result.metrics)
    for ax, (metric, label, scale) in zip(axes, panels):
        z = result.metrics[metric].T * scale  # metric[i, j] is at (xs[i], ys[j]); contourf wants rows = y
        z = np.maximum(z, 1e-4)
        cs = ax.contourf(xs, ys, z, levels=_log_levels(z), cmap="viridis_r", norm=LogNorm())
        fig.colorbar(cs, ax=ax, label=label, format="%.3g")
        p = result.points_xy
        ax.plot(p[:2, 0], p[:2, 1], "w--", lw=1.5, label="line segment")
        if "curve_xy" in result.curve:
            c = result.curve["curve_xy"]
            ax.plot(c[:, 0], c[:, 1], "w-", lw=2, label="curve (projected)")
            ax.plot(result.curve["bends_xy"][:, 0], result.curve["bends_xy"][:, 1], "ws", ms=7, mec="k", label="bend")
        ax.plot(p[:, 0], p[:, 1], "o", color="white", mec="k", ms=9, label="w1, w2, w3")
        for k, (x, y) in enumerate(p, 1):
            ax.annotate(f"w{k}", (x, y), textcoords="offset points", xytext=(6, 6), color="white", weight="bold")
        ax.set_xlabel("along u (w2 - w1)")
        ax.set_ylabel("along v (orthogonalised w3 - w1)")
        ax.set_title(label)
        ax.set_aspect("equal")
    axes[0].legend(loc="lower right", fontsize=8, framealpha=0.6)
    fig.suptitle("The plane through three networks (BatchNorm recomputed at every grid point)")
    save_figure(fig, path)


def plot_landscape(result, path) -> None:
    """A landscape slice (a LandscapeResult): loss and error along one direction, or contours over two with the
    plane's colour scales, the centre and any projected trajectory drawn on."""
    panels = _panels(result.metrics)
    pca = result.summary.get("directions") == "pca"
    labels = ("first principal direction", "second principal direction") if pca else \
        ("random direction 1 (filter-normalised)", "random direction 2 (filter-normalised)")
    if result.dims == 1:
        fig, axes = _subplots(1, 2, figsize=(11, 4), layout="constrained")
        for ax, (metric, label, scale) in zip(axes, panels):
            ax.plot(result.axes[0], result.metrics[metric] * scale, color="C0", lw=2)
            ax.axvline(0, color="k", lw=0.8, ls=":")
            ax.set_xlabel(labels[0])
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
        axes[0].set_yscale("log")
    else:
        xs, ys = result.axes
        fig, axes = _subplots(1, 2, figsize=(14, 5), layout="constrained")
        for ax, (metric, label, scale) in zip(axes, panels):
            z = np.maximum(result.metrics[metric].T * scale, 1e-4)  # contourf wants rows = y
            cs = ax.contourf(xs, ys, z, levels=_log_levels(z), cmap="viridis_r", norm=LogNorm())
            fig.colorbar(cs, ax=ax, label=label, format="%.3g")
            if "trajectory_xy" in result.trajectory:
                tr = result.trajectory["trajectory_xy"]
                ax.plot(tr[:, 0], tr[:, 1], "w.-", lw=1.5, ms=6, label="training trajectory (projected)")
            ax.plot([0], [0], "o", color="white", mec="k", ms=9, label="centre")
            ax.set_xlabel(labels[0])
            ax.set_ylabel(labels[1])
            ax.set_title(label)
        axes[0].legend(loc="lower right", fontsize=8, framealpha=0.6)
    c = result.summary.get("centre", {})
    where = f"curve {c['curve']} at t = {c['t']:g}" if "curve" in c else f"network {c.get('network')}"
    bn = result.summary.get("batchnorm", "statistics recomputed at every grid point")  # older files: always BN
    fig.suptitle(f"Loss landscape around {where}" + (" (BatchNorm recomputed at every point)" if bn != "none" else ""))
    save_figure(fig, path)


def plot_curvature(result: dict, path) -> None:
    """Top Hessian eigenvalue, trace (when measured) and train loss against t for each path, or one network's
    top eigenvalues."""
    paths, t = result["paths"], np.asarray(result["t"])
    if result["kind"] == "network":
        fig, ax = _subplots(1, 1, figsize=(5, 4), layout="constrained")
        values = paths["network"][0]["eigenvalues"]
        ax.bar(np.arange(1, len(values) + 1), values, color="C0")
        ax.set_xlabel("eigenvalue rank")
        ax.set_ylabel("Hessian eigenvalue (train loss)")
        tr = paths["network"][0]["trace"]
        ax.set_title(f"top eigenvalues{f', trace {tr:.4g}' if tr is not None else ''}")
        save_figure(fig, path)
        return
    panels = [("top eigenvalue", lambda r: r["eigenvalues"][0])]
    if result["settings"]["trace"]:
        panels.append(("trace (Hutch++)", lambda r: r["trace"]))
    panels.append(("train loss", lambda r: r["train_loss"]))
    fig, axes = _subplots(1, len(panels), figsize=(5.5 * len(panels), 4), layout="constrained")
    for ax, (label, get) in zip(axes, panels):
        for k, (name, rows) in enumerate(paths.items()):
            ax.plot(t, [get(r) for r in rows], "o-", **{k2: v for k2, v in _style(name, k).items() if k2 != "ls"})
        ax.set_xlabel("t (0 = start network, 1 = end network)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[-1].set_yscale("log")
    bn = f" (BatchNorm: {result['batchnorm']})" if result["batchnorm"] != "none" else ""
    fig.suptitle(f"Curvature of the train loss along the path{bn}")
    save_figure(fig, path)


def plot_instability(result: dict, path) -> None:
    """Test-error and train-loss barriers of the line between two copies against the epoch they were spawned at."""
    rows = result["per_spawn"]
    k = [r["spawn"] for r in rows]
    fig, axes = _subplots(1, 2, figsize=(11, 4), layout="constrained")
    if all("test_err_barrier" in r for r in rows):  # classification, drawn as it always was
        axes[0].plot(k, [100 * r["test_err_barrier"] for r in rows], "o-", color="C0", lw=2)
        axes[0].axhline(100 * result["stable_below"], color="k", ls=":", label=f"{100 * result['stable_below']:.0f}% "
                        "(stable below, Frankle et al.)")
        axes[0].set_ylabel("test-error barrier (%)")
        axes[0].legend()
    else:  # perplexity or loss: its barrier (stable below a fraction of the copies' mean)
        lead = deciding_metric(rows)
        axes[0].plot(k, [r[f"{lead}_barrier"] for r in rows], "o-", color="C0", lw=2)
        axes[0].set_ylabel(f"{metric_label(lead).replace(' ', '-')} barrier")
    axes[1].plot(k, [r["train_loss_barrier"] for r in rows], "o-", color="C3", lw=2)
    axes[1].set_ylabel("train-loss barrier")
    for ax in axes:
        ax.set_xlabel("epoch the two copies were spawned at")
        ax.grid(alpha=0.3)
        if k and min(k) >= 0 and max(k) > 0:
            ax.set_xscale("symlog", linthresh=1)
    fig.suptitle(f"Instability analysis: {result['model']} on {result['dataset']}, {result['config']['epochs']} epochs")
    save_figure(fig, path)


def plot_fge(result: FGEResult, path) -> None:
    """Ensemble vs single-snapshot test error and NLL (an FGEResult; the task's first two ensemble metrics for
    another task) against snapshots taken and epochs spent."""
    recs = result.snapshots
    k = [r["snapshot"] for r in recs]
    fig, axes = _subplots(1, 2, figsize=(11, 4), layout="constrained")
    if {"ensemble_test_err", "ensemble_test_nll"} <= set(recs[0]):  # classification, drawn as it always was
        panels = [("test_err", "ensemble_test_err", "test error (%)", 100), ("test_nll", "ensemble_test_nll",
                                                                           "test NLL", 1)]
    else:  # the first two metrics a snapshot and the ensemble share (regression: loss and MAE; lm: loss and error)
        shared = [k.removeprefix("ensemble_") for k in recs[0] if k.startswith("ensemble_test_")]
        panels = [(k, "ensemble_" + k, metric_label(k), 1) for k in shared if k in recs[0]][:2]
    for ax, (own, ens, label, scale) in zip(axes, panels):
        ax.plot(k, [r[own] * scale for r in recs], "o--", color="C7", label="single snapshot")
        ax.plot(k, [r[ens] * scale for r in recs], "o-", color="C0", lw=2, label="FGE ensemble so far")
        if result.swa:
            ax.axhline(result.swa[own] * scale, color="C2", ls=":", label="SWA (weight average)")
        ax.set_xlabel("snapshots taken")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        top = ax.secondary_xaxis("top", functions=(
            lambda s: np.interp(s, k, [r["epoch"] for r in recs]) if len(k) > 1 else s,
            lambda e: np.interp(e, [r["epoch"] for r in recs], k) if len(k) > 1 else e))
        top.set_xlabel("epochs of FGE")
        ax.legend()
    fig.suptitle("Fast Geometric Ensembling")
    save_figure(fig, path)


def plot_triangle(weights: np.ndarray, values: np.ndarray, corners: list[float] | None, path, title: str = "",
                  metric: str = "test_err") -> None:
    """A test metric over a 2-simplex (the error, in percent, for classification; `metric` names it): a heat map
    interpolated between the measured points (dots), the vertices marked (with their own values in the
    interpolation when given)."""
    import matplotlib.tri as mtri

    scale, unit = (100, "%") if metric == "test_err" else (1, "")
    corner_xy = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]])
    xy = weights @ corner_xy  # barycentric weights -> the plane of an equilateral triangle
    values = np.asarray(values, dtype=float)
    if corners is not None:
        xy, values = np.vstack([xy, corner_xy]), np.concatenate([values, corners])
    fig, ax = _subplots(1, 1, figsize=(5.6, 4.8))
    shown = ax.tripcolor(mtri.Triangulation(xy[:, 0], xy[:, 1]), scale * values, shading="gouraud", cmap="viridis")
    fig.colorbar(shown, ax=ax, label=metric_label(metric) + (f" ({unit})" if unit else ""))
    ax.plot(*(weights @ corner_xy).T, ".", color="white", ms=3, alpha=0.7)
    ax.plot(*np.vstack([corner_xy, corner_xy[:1]]).T, color="k", lw=1)
    for k, (x, y) in enumerate(corner_xy):
        label = f"vertex {k}"
        if corners is not None:
            label += f"\n{scale * corners[k]:.1f}%" if unit else f"\n{corners[k]:.3g}"
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(0, 8 if k == 2 else -22), ha="center")
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"{metric_label(metric)} over the simplex (BN recomputed at each point)", fontsize=10,
                 pad=30)
    save_figure(fig, path)
