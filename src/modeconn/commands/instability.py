"""`modeconn instability`: from which epoch do two copies trained on different data orders stay linearly
connected? (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis".)

One parent network trains up to the last spawn epoch, keeping its state (weights and momentum) at
each spawn epoch k: the shared prefix is trained once. From each kept state two copies train for
the remaining epochs of the same schedule, each with its own data order and dropout seed; the
line between them is measured like `eval-line`. Under torchrun the parent trains data-parallel, the
copies are dealt to the ranks and train side by side, and the lines are measured sharded.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..data import load_dataset
from ..errors import ModeconnError
from ..evaluation.along import LineEval, PathEval, eval_path
from ..recipes import recipe_for
from ..reporting.plots import plot_instability
from ..runtime import distributed
from ..storage.checkpoint import Checkpoint, load_checkpoint, optimizer_tensors, save_checkpoint
from ..storage.files import make_dir, remove_file
from ..storage.runfolder import CHECKPOINT, ModelSpec, load_network
from ..training.instability import STABLE, InstabilityResult
from ..training.train import train_network
from . import validate
from .common import RunFolder, eval_settings, network_info, save_network_run, training_config, write_path_eval
from .options import REQUIRED, TrainingOptions, option
from .registry import command

COPY_SEED = 1000  # copy i trains with seed + COPY_SEED * (i + 1): its own data order and dropout


@dataclass
class InstabilityOptions(TrainingOptions):
    out: str = option(REQUIRED, "the folder to write instability.json, .png and the copies in")
    dataset: str = option("mnist1d", "the dataset")
    spawn: list[int] = option([0, 1, 2, 5, 10, 20], "epochs at which two copies are spawned from the parent",
                              nargs="+")
    model: str | None = option(None, "registry name (default: the dataset's default model)")
    points: int = option(11, "points along each line between two copies")
    same_order: bool = option(False, "both copies see one data order (a check: no barrier)")
    bn_samples: int | None = option(None, "recompute BatchNorm on this many training examples")
    train_samples: int | None = option(None, "train metrics on a random subset")


def _summary(result: InstabilityResult, o: InstabilityOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/instability.json and instability.png"


@command("instability", InstabilityOptions, help="from which epoch two copies on different data orders stay "
                                                  "linearly connected (Frankle et al. 2020)", summary=_summary)
def instability(o: InstabilityOptions) -> InstabilityResult:
    """Barriers between two copies spawned at each epoch in `spawn`: OUT/instability.json and .png.

    `same_order` trains both copies with one data order (a check: they must come out identical).
    A killed run continues with --resume and the same settings.
    """
    out, dataset, spawn, model, epochs, lr, wd = o.out, o.dataset, o.spawn, o.model, o.epochs, o.lr, o.wd
    batch_size, seed, points, same_order, bn_samples = o.batch_size, o.seed, o.points, o.same_order, o.bn_samples
    train_samples, data_dir, device, resume, progress = o.train_samples, o.data_dir, o.device, o.resume, o.progress
    speed = o.speed
    recipe = recipe_for(dataset)
    spec = ModelSpec(validate.model_name(model) or recipe.model, {})
    cfg = training_config(recipe.train, epochs, lr, wd, batch_size, seed)
    ks = sorted({validate.nonnegative_int("--spawn", k) for k in spawn})
    if not ks:
        raise ModeconnError("--spawn needs at least one epoch")
    if ks[-1] >= cfg.epochs:
        raise ModeconnError(f"--spawn {ks[-1]} is not before --epochs {cfg.epochs}: copies spawned there would "
                            "train for no epochs; spawn at epochs 0.." + str(cfg.epochs - 1))
    if validate.positive_int("--points", points) < 2:
        raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
    settings_eval = eval_settings(cfg.wd, 1000, bn_samples, train_samples)
    data_dir = validate.data_dir(data_dir)
    settings = {"dataset": dataset, "model": spec.name, "config": cfg.to_dict(), "spawn": ks, "points": points,
                "same_order": same_order, "bn_samples": settings_eval.bn_samples,
                "train_samples": settings_eval.train_samples}
    folder = RunFolder(out, "instability.json", resume=resume, settings=settings)
    dev = folder.join(device)
    data = load_dataset(dataset, data_dir).to(dev)
    with folder.claim() as out_dir:
        _train_parent(out_dir, spec, data, cfg, ks, settings, progress, speed)
        copies = [(k, i) for k in ks for i in range(2)]
        mine = [copies[j] for j in distributed.my_indices(len(copies))]
        with distributed.alone():  # copies are independent: under torchrun each rank trains its share by itself
            for k, i in mine:
                _train_copy(out_dir, k, i, spec, data, dataset, data_dir, cfg, settings, same_order, progress, speed)
        distributed.barrier()
        rows = [_measure(out_dir / f"k{k}", k, [_copy_folder(out_dir, k, i) for i in range(2)], data, points,
                         settings_eval, progress, speed) for k in ks]
        result = InstabilityResult(dataset, spec.name, cfg.to_dict(), ks, points, same_order, rows,
                                   settings_eval.__dict__)
        plot_instability(result.to_json(), out_dir / "instability.png")
        result.write(out_dir)
    return result


def _spawn_file(out: Path, k: int) -> Path:
    return out / "spawn" / f"epoch{k}.safetensors"


def _train_parent(out: Path, spec: ModelSpec, data, cfg, ks: list[int], settings: dict, progress, speed) -> None:
    """Train the shared prefix once (resumable), keeping weights and momentum at each spawn epoch."""
    torch.manual_seed(cfg.seed)
    net = spec.build(data).to(data.train_x.device)
    make_dir(out / "spawn")
    # Every rank decides from the same view of the folder, taken before anyone writes: a rank that
    # looked after rank 0 had written a state would skip the write's barrier and hang the others.
    kept = {k for k in ks if _spawn_file(out, k).exists()}
    distributed.barrier()

    def keep(epoch: int, optimizer) -> None:
        if epoch in ks and epoch not in kept:
            save_checkpoint(_spawn_file(out, epoch), Checkpoint(net.state_dict(), optimizer_tensors(optimizer), epoch,
                                                                [], settings))

    if 0 in ks and 0 not in kept:
        save_checkpoint(_spawn_file(out, 0), Checkpoint(net.state_dict(), {}, 0, [], settings))
    if ks[-1] > 0 and ks[-1] not in kept:
        train_network(net, data, cfg, checkpoint=out / CHECKPOINT, resume=True, settings=settings,
                      progress=progress, desc="parent", on_epoch_end=lambda e, opt: keep(e + 1, opt),
                      stop_epoch=ks[-1], speed=speed)
    distributed.barrier()


def _copy_folder(out: Path, k: int, i: int) -> Path:
    return out / f"k{k}" / f"copy{i}"


def _train_copy(out: Path, k: int, i: int, spec: ModelSpec, data, dataset, data_dir, cfg, settings: dict,
                same_order: bool, progress, speed) -> Path:
    """Copy i spawned at epoch k, trained to the end of the schedule with its own data order (resumable).

    Called inside `distributed.alone()`: this process trains the copy by itself and writes its folder.
    """
    folder = _copy_folder(out, k, i)
    if (folder / "run.json").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    copy_cfg = replace(cfg, seed=cfg.seed + COPY_SEED * (1 if same_order else i + 1))
    copy_settings = {**settings, "copy": {"spawn": k, "index": i, "seed": copy_cfg.seed}}
    if not (folder / CHECKPOINT).exists():
        start = load_checkpoint(_spawn_file(out, k), settings)
        save_checkpoint(folder / CHECKPOINT, Checkpoint(start.module, start.optimizer, k, [], copy_settings))
    net = spec.build(data).to(data.train_x.device)
    _, optimizer = train_network(net, data, copy_cfg, checkpoint=folder / CHECKPOINT, resume=True,
                                 settings=copy_settings, progress=progress, desc=f"k={k} copy {i}", speed=speed)
    save_network_run(folder, net, optimizer, {**network_info(dataset, data_dir, spec, data, copy_cfg, speed),
                                              "epochs_trained": cfg.epochs, "spawned_at": k}, data, speed)
    remove_file(folder / CHECKPOINT)
    return folder


def _measure(folder: Path, k: int, copies: list[Path], data, points: int, settings, progress, speed) -> dict:
    """The line between the two copies (line_eval.json in OUT/kK, kept for a resume) and its barriers."""
    result: PathEval
    if (folder / LineEval.file).exists():
        result = LineEval.read(folder)
    else:
        first, second = (load_network(c, data, data.train_x.device) for c in copies)
        result = eval_path(None, first, second, data, points, settings, progress, speed)
        result.start, result.end = str(copies[0]), str(copies[1])
        write_path_eval(folder, result, f"copies spawned at epoch {k}")
    test_err = np.asarray(result.values("line", "test_err"))
    barrier = result.stat("line", "test_err", "barrier")
    return {"spawn": k, "test_err_barrier": barrier, "train_loss_barrier": result.stat("line", "train_loss", "barrier"),
            "test_err_mean_barrier": result.stat("line", "test_err", "mean_barrier"),
            "train_loss_mean_barrier": result.stat("line", "train_loss", "mean_barrier"),
            "copies_test_err": [float(test_err[0]), float(test_err[-1])], "stable": barrier < STABLE}
