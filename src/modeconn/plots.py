"""Figures as PNG files (matplotlib, no display needed), written atomically."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .checkpoint import atomic_write  # noqa: E402

STYLE = {"curve": dict(color="C0", lw=2, label="curve"), "line": dict(color="C3", lw=2, ls="--", label="line segment")}


def save_figure(fig, path) -> None:
    """Write a figure as PNG atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def plot_along(result: dict, path, title: str = "") -> None:
    """Train loss and test error along t, curve and line on the same axes, endpoints marked."""
    t = np.asarray(result["t"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [("train_loss", "train loss (cross-entropy)", False), ("test_err", "test error (%)", True)]
    for ax, (metric, label, percent) in zip(axes, panels):
        for name in ("curve", "line"):
            if name in result:
                v = np.asarray(result[name][metric]) * (100 if percent else 1)
                b = result["summary"]["barriers"][name][metric] * (100 if percent else 1)
                ax.plot(t, v, **{**STYLE[name], "label": f"{STYLE[name]['label']} (barrier {b:.3g})"})
                ax.plot([t[0], t[-1]], [v[0], v[-1]], "o", color="k", ms=7, zorder=5)
        ax.set_xlabel("t (0 = start network, 1 = end network)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    fig.suptitle(title or "Along the curve vs the straight line (BatchNorm recomputed at each point)")
    save_figure(fig, path)
