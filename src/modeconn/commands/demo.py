"""`modeconn demo` (the whole story on MNIST-1D in a few minutes on 2 CPU cores) and `modeconn report`."""
from __future__ import annotations

from pathlib import Path

from ..errors import ModeconnError
from ..recipes import RECIPES
from ..reporting.report import render_report
from ..runtime.speed import EAGER, Speed
from ..storage.runfolder import CHECKPOINT, claim_output
from . import validate
from .alignment import connectivity
from .ensembles import fge
from .measure import ensemble, eval_curve, plane
from .network import connect, train

FGE_START = 40  # 0.8B of the 50-epoch MNIST-1D recipe, as in the paper: FGE then spends the last 0.2B


def _step(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", flush=True)


def demo(out="runs/demo", device: str = "auto", progress: bool = True, speed: Speed = EAGER) -> Path:
    """Train two networks, connect them, evaluate, align them, draw the plane, run FGE, write the report.

    Finished steps are skipped, so an interrupted demo continues where it stopped.
    """
    out = validate.output_folder("--out", out)
    validate.device(device)
    common = dict(device=device, progress=progress, speed=speed)
    recipe = RECIPES["mnist1d"]
    total = 9
    with claim_output(out, None):  # a workspace: finished steps are skipped
        for i, seed in enumerate((1, 2)):
            run = out / "ab"[i]
            _step(i + 1, total, f"training network {'ab'[i]} (MNIST-1D, seed {seed})")
            if not (run / "run.json").exists():
                train(run, "mnist1d", seed=seed, keep_epochs=(FGE_START,), resume=(run / CHECKPOINT).exists(),
                      **common)
        for i, kind in enumerate(("bezier", "polychain")):
            _step(3 + i, total, f"fitting a {kind} curve between them and evaluating it against the line (61 points)")
            run = out / kind
            if not (run / "run.json").exists():
                connect(out / "a", out / "b", run, curve=kind, bends=1, resume=(run / CHECKPOINT).exists(), **common)
            if not (run / "curve_eval.json").exists():
                eval_curve(run, points=61, **common)
        _step(5, total, "aligning b's hidden units to a's (weight and activation matching) and measuring the lines, "
                        "with REPAIR")
        if not (out / "paths" / "paths.json").exists():
            connectivity(out / "a", out / "b", out / "paths", points=21, **common)
        _step(6, total, "computing the loss surface in the plane through the Bezier curve (21 x 21)")
        if not (out / "plane" / "plane.json").exists():
            plane(out / "plane", curve=out / "bezier", grid=21, margin=0.2, **common)
        budget = recipe.train.epochs
        _step(7, total, f"Fast Geometric Ensembling from network a's state at epoch {FGE_START} "
                        f"({budget - FGE_START} epochs of cycles: the same budget as network a)")
        if not (out / "fge" / "fge.json").exists():
            fge(out / "a" / f"epoch{FGE_START}", out / "fge", epochs=budget - FGE_START,
                resume=(out / "fge" / CHECKPOINT).exists(), **common)
        _step(8, total, "ensembling 5 networks along the Bezier curve")
        if not (out / "bezier" / "ensemble.json").exists():
            ensemble(out / "bezier", points=5, **common)
        _step(9, total, "writing the report")
        return render_report(out)


def report(dir) -> Path:
    """Write DIR/report.html describing every modeconn result under DIR."""
    if dir is None or not str(dir).strip() or not Path(dir).is_dir():
        raise ModeconnError(f"{dir!r} is not a folder: pass a folder holding modeconn runs")
    return render_report(validate.output_folder("DIR", dir))
