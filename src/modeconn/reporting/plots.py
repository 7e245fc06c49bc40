"""Figures as PNG files (matplotlib, no display needed), written atomically."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..storage.files import atomic_write  # noqa: E402

STYLE = {"curve": dict(color="C0", lw=2, label="curve"), "line": dict(color="C3", lw=2, ls="--", label="line segment")}


def _style(name: str, k: int) -> dict:
    """How a path is drawn: the curve and line as always, any other path in its own colour."""
    others = ("C2", "C1", "C4", "C6", "C5", "C8", "C9", "C7")  # C0 and C3 are the curve's and the line's
    return STYLE.get(name, dict(color=others[k % len(others)], lw=2, label=name.replace("_", " ")))


def save_figure(fig, path) -> None:
    """Write a figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_along(result, path, title: str = "") -> None:
    """Train loss and test error along t (a PathEval or PathsResult), every path on the same axes, endpoints marked."""
    t = np.asarray(result.t)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [("train_loss", "train loss (cross-entropy)", False), ("test_err", "test error (%)", True)]
    for ax, (metric, label, percent) in zip(axes, panels):
        for k, name in enumerate(result.paths()):
            scale, style = 100 if percent else 1, _style(name, k)
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
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), layout="constrained")
    panels = [("train_loss", "train loss (cross-entropy)", 1), ("test_err", "test error (%)", 100)]
    for ax, (metric, label, scale) in zip(axes, panels):
        z = result.metrics[metric].T * scale  # metric[i, j] is at (xs[i], ys[j]); contourf wants rows = y
        z = np.maximum(z, 1e-4)
        cs = ax.contourf(xs, ys, z, levels=_log_levels(z), cmap="viridis_r", norm=matplotlib.colors.LogNorm())
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


def plot_fge(result: dict, path) -> None:
    """Ensemble vs single-snapshot test error and NLL (an FGEResult) against snapshots taken and epochs spent."""
    recs = result.snapshots
    k = [r["snapshot"] for r in recs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for ax, (own, ens, label, scale) in zip(axes, [("test_err", "ensemble_test_err", "test error (%)", 100),
                                                   ("test_nll", "ensemble_test_nll", "test NLL", 1)]):
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
