"""`modeconn subspace`: a line, curve or simplex of networks trained from scratch (Wortsman et al. 2021).

Every vertex starts from its own random initialisation (vertex 0 from the one `train --seed` uses).
A line or curve is written as a curve run (eval-curve and ensemble read it; plane a curve), a simplex as a
simplex run (eval-simplex); OUT/midpoint is the subspace's midpoint as an ordinary network run.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

import torch

from ..core.curve import Curve
from ..core.simplex import Simplex
from ..data import load_dataset
from ..errors import ModeconnError
from ..recipes import recipe_for
from ..runtime import distributed
from ..storage.files import save_tensors
from ..storage.runfolder import CHECKPOINT, ModelSpec, RunInfo, write_run
from ..tasks import headline, metric_label
from ..training.subspace import SPREAD, subspace_metrics, train_subspace
from . import validate
from .common import RunFolder, network_info, save_network_run, task_field, training_config
from .options import REQUIRED, TASK_HELP, TrainingOptions, option
from .registry import command
from .simplex import MAX_VERTICES

SHAPES = "line, curve or simplexK (K vertices, 3 to 8)"


def vertex_count(shape: str) -> int:
    """Vertices of a subspace shape: line 2, curve 3 (a one-bend Bezier), simplexK K."""
    if shape == "line":
        return 2
    if shape == "curve":
        return 3
    match = re.fullmatch(r"simplex(\d+)", shape)
    if match and 3 <= int(match.group(1)) <= MAX_VERTICES:
        return int(match.group(1))
    raise ModeconnError(f"--shape {shape!r} is not a subspace shape: choose {SHAPES}")


@dataclass
class SubspaceOptions(TrainingOptions):
    out: str = option(REQUIRED, "the run folder to write")
    dataset: str = option("mnist1d", "the dataset (or your own as package.module:callable)")
    task: str | None = option(None, TASK_HELP)
    shape: str = option("line", "line, curve (one bend) or simplexK (K = 3..8 vertices)")
    spread: float | None = option(None, "weight of the vertices' mean squared cosine similarity in the loss "
                                        "(default 1, Wortsman et al.'s)")
    model: str | None = option(None, "registry name or your builder's package.module:callable (default: the "
                                     "dataset's recipe)")


def _summary(run: RunInfo, o: SubspaceOptions) -> str:
    r = run.raw
    lead = headline(r["metrics"]["vertex0"])  # test_err, or test_loss for a task without an error
    return (f"{o.out}: {r['subspace']['shape']} from scratch, midpoint {metric_label(lead)} "
            f"{r['midpoint_' + lead]:.4f} (BN recomputed; kept as the network run {o.out}/midpoint), vertices "
            + ", ".join(f"{r['metrics'][f'vertex{k}'][lead]:.4f}" for k in range(len(r['distances'])))
            + f" ({r['seconds']:.1f} s)")


@command("subspace", SubspaceOptions, help="train a line, curve or simplex of networks from scratch "
                                            "(Wortsman et al. 2021)", summary=_summary)
def subspace(o: SubspaceOptions) -> RunInfo:
    """Train a SHAPE subspace from scratch into OUT; returns its run.json's record."""
    out, dataset, shape, spread, model, epochs, lr = o.out, o.dataset, o.shape, o.spread, o.model, o.epochs, o.lr
    wd, batch_size, seed, data_dir, device, resume = o.wd, o.batch_size, o.seed, o.data_dir, o.device, o.resume
    progress, speed = o.progress, o.speed
    recipe = recipe_for(dataset)
    k = vertex_count(shape)
    shape = shape if k < 3 or shape == "curve" else f"simplex{k}"  # recorded in its normal form: simplex03 is simplex3
    spread = SPREAD if spread is None else validate.nonnegative_float("--spread", spread)
    spec = ModelSpec(validate.model_name(model) or recipe.model, {})
    task = validate.task(o.task)
    cfg = training_config(recipe.train, epochs, lr, wd, batch_size, seed, o.optimizer, o.schedule)
    data_dir = validate.data_dir(data_dir)
    settings = {"dataset": dataset, **task_field(task), "model": spec.name, "shape": shape, "spread": spread,
                "config": cfg.to_dict()}
    folder = RunFolder(out, "run.json", resume=resume, settings=settings)
    dev = folder.join(device)
    data = load_dataset(dataset, data_dir, task).to(dev)
    torch.manual_seed(cfg.seed)  # vertex 0 starts where `train --seed` starts
    vertices = [spec.build(data) for _ in range(k)]
    span = (Simplex(vertices, free=[True] * k) if shape.startswith("simplex") else Curve.through(vertices)).to(dev)
    with folder.claim() as out_dir:
        began = time.time()
        history, _ = train_subspace(span, data, cfg, spread, checkpoint=out_dir / CHECKPOINT, resume=resume,
                                    settings=settings, progress=progress, desc=f"subspace {out_dir.name}", speed=speed)
        seconds = round(time.time() - began, 2)
        base = network_info(dataset, data_dir, spec, data, cfg, speed, task)
        info = _write(out_dir, span, {"shape": shape, "spread": spread}, base, data, history, seconds, speed)
    return info


def _write(out, span, subspace: dict, base: dict, data, history, seconds, speed) -> RunInfo:
    """The subspace file, OUT/midpoint (a network run, fields `base`) and run.json, last."""
    is_curve = isinstance(span, Curve)
    mid, measured = subspace_metrics(span, data, speed)
    metrics = measured["metrics"]
    save_network_run(out / "midpoint", mid, None,
                     {**base, "subspace": "..", "epochs_trained": base["config"]["epochs"]}, data, speed,
                     metrics=metrics["midpoint"])
    info = {**base, "subspace": subspace, "processes": distributed.world_size(),
            "epoch_train_loss": history, "seconds": seconds, "squared_cosine": measured["squared_cosine"],
            "distances": measured["distances"], "metrics": metrics,
            **{f"midpoint_{key}": value for key, value in metrics["midpoint"].items()}}
    if is_curve:
        info.update(kind="curve", curve={"kind": span.kind, "bends": span.num_points - 2, "free_endpoints": True},
                    length=span.length())
        save_tensors(out / "curve.safetensors", span.state_dict(),
                     metadata={"kind": span.kind, "bends": str(span.num_points - 2),
                               "names": ",".join(span.param_space.names)})
    else:
        info.update(kind="simplex", vertices=span.num_points, free_vertices=span.num_points, volume_weight=0.0,
                    volume=float(span.volume().detach()),
                    **{f"centroid_{key}": value for key, value in metrics["midpoint"].items()})
        save_tensors(out / "simplex.safetensors", span.state_dict(),
                     metadata={"vertices": str(span.num_points), "names": ",".join(span.param_space.names)})
    return write_run(out, info)

