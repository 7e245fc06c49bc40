"""`modeconn demo`: the whole story on MNIST-1D in about a minute on 2 CPU cores, ending in report.html."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .fge import FGEConfig
from .report import render_report
from .runs import TRAIN_DEFAULTS, connect_run, ensemble_curve_run, eval_curve_run, train_run

# FGE over the last 0.2B = 10 epochs of the budget: 5 cycles of 2 epochs. lr1 = 0.15 was picked from
# {0.05, 0.1, 0.15, 0.2, 0.4} on this demo (0.05 and 0.1 leave the snapshots nearly identical).
FGE_DEMO = FGEConfig(epochs=10, cycle=2, lr1=0.15, lr2=0.0005, batch_size=64)


FGE_START = 40  # 0.8B of the 50-epoch MNIST-1D recipe, as in the paper


def _step(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", flush=True)


def run_demo(out, device="auto", progress: bool = True) -> Path:
    """Train two networks, connect them, evaluate, draw the plane, run FGE, write the report.

    Finished steps are skipped, so an interrupted demo continues where it stopped.
    """
    from .fge import fge_run
    from .plane_run import plane_run

    out = Path(out)
    total = 8
    for i, seed in enumerate((1, 2)):
        _step(i + 1, total, f"training network {'ab'[i]} (MNIST-1D, seed {seed})")
        if not (out / "ab"[i] / "run.json").exists():
            train_run("mnist1d", out / "ab"[i], cfg=replace(TRAIN_DEFAULTS["mnist1d"], seed=seed), device=device,
                      resume=(out / "ab"[i] / "checkpoint.safetensors").exists(), progress=progress,
                      keep_epochs=(FGE_START,))
    for i, kind in enumerate(("bezier", "polychain")):
        _step(3 + i, total, f"fitting a {kind} curve between them and evaluating it against the line (61 points)")
        run = out / kind
        if not (run / "run.json").exists():
            connect_run(out / "a", out / "b", run, kind=kind, bends=1, device=device,
                        resume=(run / "checkpoint.safetensors").exists(), progress=progress)
        if not (run / "curve_eval.json").exists():
            eval_curve_run(run, points=61, device=device, progress=progress)
    _step(5, total, "computing the loss surface in the plane through the Bezier curve (21 x 21)")
    if not (out / "plane" / "plane.json").exists():
        plane_run(out / "plane", curve_run=out / "bezier", grid=21, margin=0.2, device=device, progress=progress)
    budget = TRAIN_DEFAULTS["mnist1d"].epochs
    _step(6, total, f"Fast Geometric Ensembling from network a's state at epoch {FGE_START} "
                    f"({budget - FGE_START} epochs of cycles: the same budget as network a)")
    if not (out / "fge" / "fge.json").exists():
        fge_run(out / "a" / f"epoch{FGE_START}", out / "fge", FGE_DEMO, device=device,
                resume=(out / "fge" / "checkpoint.safetensors").exists(), progress=progress)
    _step(7, total, "ensembling 5 networks along the Bezier curve")
    if not (out / "bezier" / "ensemble.json").exists():
        ensemble_curve_run(out / "bezier", points=5, device=device, progress=progress)
    _step(8, total, "writing the report")
    return render_report(out)
