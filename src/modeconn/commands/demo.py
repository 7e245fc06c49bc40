"""`modeconn demo`: the whole story on MNIST-1D in a few minutes on 2 CPU cores, ending in report.html."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..data import load_dataset
from ..reporting.report import render_report
from ..storage.runfolder import CHECKPOINT
from . import validate
from .common import RunFolder
from .connect import connect
from .connectivity import connectivity
from .ensemble import ensemble
from .eval_curve import eval_curve
from .fge import fge
from .options import DeviceOptions, option
from .plane import plane
from .registry import command
from .train import train

# The demo runs MNIST-1D's recipe with shorter schedules, so that the whole story takes about a minute on 2 CPU
# cores; the paper's schedules (the recipe's 50 epochs) give lower errors and the same picture (docs/results.md).
EPOCHS = 20  # networks and curves
# FGE spends the last EPOCHS - FGE_START epochs of network a's budget. The paper starts it at 0.8B; with a
# 20-epoch budget that leaves two cycles (two snapshots), so the demo starts at 0.6B and takes four.
FGE_START = 12
POINTS = 41  # along each curve and line
GRID = 15  # the plane's grid, GRID x GRID


# The optional language-model part (--lm): a tiny GPT pre-trained on every fortunes topic but one, two copies
# fine-tuned from it on the held-out topic, two trained there from scratch, and the lines between each pair, with
# the scratch pair's aligned and joined by a Bezier curve (docs/results.md runs the same with longer schedules and
# three seeds).
LM_TOPIC = "computers"
LM_PRETRAIN = f"fortunes/except={LM_TOPIC}"
LM_TARGET = f"fortunes/only={LM_TOPIC}"
LM_PRETRAIN_EPOCHS = 1  # about 520 steps
LM_EPOCHS = 3  # fine-tuning and from scratch: about 160 steps
LM_TRAIN_SAMPLES = 256  # blocks the lines' train metrics are measured on (test metrics: every test block)


@dataclass
class DemoOptions(DeviceOptions):
    out: str = option("runs/demo", "the folder the runs and report.html go in")
    lm: bool = option(False, "also pre-train a tiny GPT on fortunes, fine-tune two copies on a held-out topic, train "
                             "two there from scratch and compare the lines between the pairs (about 4 more minutes; "
                             "needs transformers and the fortunes text)")


def _step(n: int, total: int, text: str) -> None:
    print(f"[{n}/{total}] {text}", flush=True)


def _summary(report: Path, o: DemoOptions) -> str:
    return f"results in {o.out}; open {report}"


@command("demo", DemoOptions, help="the whole pipeline on MNIST-1D, ending in report.html", summary=_summary)
def demo(o: DemoOptions) -> Path:
    """Train two networks, connect them, evaluate, align them, draw the plane, run FGE, write the report.

    Finished steps are skipped, so an interrupted demo continues where it stopped.
    """
    began = time.time()
    if o.lm:  # refused at the door, not after the MNIST-1D part: transformers missing, or the text
        validate.model_name("hf:gpt2-tiny")
        load_dataset(LM_TARGET)
    folder = RunFolder(o.out, None)
    folder.join(o.device)  # its steps join as well: joining is done once
    common = o.device_options()
    total = 10 if o.lm else 9
    with folder.claim() as out:  # a workspace: finished steps are skipped
        for i, seed in enumerate((1, 2)):
            run = out / "ab"[i]
            _step(i + 1, total, f"training network {'ab'[i]} (MNIST-1D, seed {seed})")
            if not (run / "run.json").exists():
                train(run, "mnist1d", seed=seed, epochs=EPOCHS, keep_epochs=[FGE_START],
                      resume=(run / CHECKPOINT).exists(), **common)
        for i, kind in enumerate(("bezier", "polychain")):
            _step(3 + i, total, f"fitting a {kind} curve between them and evaluating it against the line "
                              f"({POINTS} points)")
            run = out / kind
            if not (run / "run.json").exists():
                connect(out / "a", out / "b", run, curve=kind, bends=1, epochs=EPOCHS,
                        resume=(run / CHECKPOINT).exists(), **common)
            if not (run / "curve_eval.json").exists():
                eval_curve(run, points=POINTS, **common)
        _step(5, total, "aligning b's hidden units to a's (weight and activation matching) and measuring the lines, "
                        "with REPAIR")
        if not (out / "paths" / "paths.json").exists():
            connectivity(out / "a", out / "b", out / "paths", points=21, **common)
        _step(6, total, f"computing the loss surface in the plane through the Bezier curve ({GRID} x {GRID})")
        if not (out / "plane" / "plane.json").exists():
            plane(out / "plane", curve=out / "bezier", grid=GRID, margin=0.2, **common)
        budget = EPOCHS
        _step(7, total, f"Fast Geometric Ensembling from network a's state at epoch {FGE_START} "
                        f"({budget - FGE_START} epochs of cycles: the same budget as network a)")
        if not (out / "fge" / "fge.json").exists():
            fge(out / "a" / f"epoch{FGE_START}", out / "fge", epochs=budget - FGE_START,
                resume=(out / "fge" / CHECKPOINT).exists(), **common)
        _step(8, total, "ensembling 5 networks along the Bezier curve")
        if not (out / "bezier" / "ensemble.json").exists():
            ensemble(out / "bezier", points=5, **common)
        if o.lm:
            _step(9, total, f"language models: a GPT pre-trained on fortunes but {LM_TOPIC}, two copies fine-tuned on "
                            f"{LM_TOPIC} and two trained on it from scratch; the lines between each pair")
            _language_models(out / "lm", common)
        _step(total, total, "writing the report")
        report = render_report(out)
    print(f"demo finished in {time.time() - began:.0f} s", flush=True)
    return report


def _language_models(out: Path, common: dict) -> None:
    """The --lm part, each step skipped where its result is there."""
    def trained(run: Path, dataset: str, **settings) -> None:
        if not (run / "run.json").exists():
            train(run, dataset, resume=(run / CHECKPOINT).exists(), **settings, **common)
    trained(out / "pre", LM_PRETRAIN, epochs=LM_PRETRAIN_EPOCHS)
    for i in (1, 2):
        trained(out / f"tuned{i}", LM_TARGET, init=out / "pre", epochs=LM_EPOCHS, lr=1e-3, seed=i)
        trained(out / f"scratch{i}", LM_TARGET, epochs=LM_EPOCHS, seed=i)
    if not (out / "tuned-paths" / "paths.json").exists():
        connectivity(out / "tuned1", out / "tuned2", out / "tuned-paths", points=11, train_samples=LM_TRAIN_SAMPLES,
                     **common)
    if not (out / "scratch-paths" / "paths.json").exists():
        connectivity(out / "scratch1", out / "scratch2", out / "scratch-paths", points=11, curve="bezier",
                     epochs=LM_EPOCHS, train_samples=LM_TRAIN_SAMPLES, **common)
