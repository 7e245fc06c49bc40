"""`modeconn train` and `modeconn connect`: train a network, or a curve between two, into a run folder."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from ..core.curve import Curve
from ..core.families import check_family
from ..data import load_dataset
from ..errors import ModeconnError
from ..evaluation.evaluate import metrics_with_bn, split_metrics
from ..recipes import recipe_for
from ..runtime import distributed
from ..runtime.provenance import made_with
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import optimizer_tensors
from ..storage.files import remove_file, save_tensors, write_json
from ..storage.runfolder import (
    CHECKPOINT,
    ModelSpec,
    check_unfinished,
    claim_output,
    describe_endpoints,
    load_endpoints,
)
from ..training.train import train_curve, train_network
from . import validate
from .common import join, training_config


def save_network_run(folder: Path, net, optimizer, info: dict, data, speed: Speed = EAGER) -> dict:
    """Write a network run folder: model.safetensors, optimizer.safetensors (unless `optimizer` is None),
    then run.json (with final metrics)."""
    info = {**info, **split_metrics(net, data, speed=speed).to_dict()}
    save_tensors(folder / "model.safetensors", net.state_dict())
    if optimizer is not None:
        save_tensors(folder / "optimizer.safetensors", optimizer_tensors(optimizer))
    write_json(folder / "run.json", info)  # last: a folder with run.json is complete
    return info


def network_info(dataset: str, data_dir, spec: ModelSpec, data, cfg, speed: Speed) -> dict:
    """The fields every network run.json starts with."""
    return {"kind": "network", "dataset": dataset, "data_dir": data_dir, "model": spec.to_dict(data),
            "config": cfg.to_dict(), "seed": cfg.seed, "speed": speed.to_dict(), "processes": distributed.world_size(),
            "made_with": made_with(data.train_x.device)}


def train(out, dataset: str = "mnist1d", model: str | None = None, epochs: int | None = None,
          lr: float | None = None, wd: float | None = None, batch_size: int | None = None, seed: int = 0,
          keep_epochs=(), keep_every: int | None = None, data_dir: str | None = None, device: str = "auto",
          resume: bool = False, progress: bool = True, speed: Speed = EAGER) -> dict:
    """Train one network into OUT: model.safetensors, optimizer.safetensors and run.json (returned).

    Each epoch in `keep_epochs` is also kept as a run folder OUT/epochN (e.g. the 0.8B state FGE
    starts from in the paper); its run.json names the run that went on (`full_run`). `keep_every` k
    keeps epochs k, 2k, ... as well (a trajectory for `landscape --directions pca`).
    """
    recipe = recipe_for(dataset)
    spec = ModelSpec(validate.model_name(model) or recipe.model, {})
    cfg = training_config(recipe.train, epochs, lr, wd, batch_size, seed)
    keep = {validate.positive_int("--keep-epochs", k) for k in keep_epochs}
    if keep and max(keep) > cfg.epochs:
        raise ModeconnError(f"--keep-epochs {max(keep)} is outside 1..{cfg.epochs} (the epochs trained)")
    every = validate.optional(validate.positive_int, "--keep-every", keep_every)
    keep = sorted(keep | (set(range(every, cfg.epochs, every)) if every else set()))
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    settings = {"dataset": dataset, "model": spec.name, "config": cfg.to_dict(), "keep_epochs": keep}
    check_unfinished(out, "run.json", resume, settings)
    dev = join(device)
    data = load_dataset(dataset, data_dir).to(dev)
    torch.manual_seed(cfg.seed)
    net = spec.build(data).to(dev)
    base = network_info(dataset, data_dir, spec, data, cfg, speed)

    def save(folder: Path, optimizer, extra: dict) -> dict:
        return save_network_run(folder, net, optimizer, {**base, **extra}, data, speed)

    def keep_epoch(epoch: int, optimizer) -> None:
        if epoch + 1 in keep:
            save(out / f"epoch{epoch + 1}", optimizer, {"epochs_trained": epoch + 1, "full_run": ".."})

    with claim_output(out, "run.json", resume, settings):
        start = time.time()
        history, optimizer = train_network(net, data, cfg, checkpoint=out / CHECKPOINT, resume=resume,
                                           settings=settings, progress=progress, desc=f"train {out.name}",
                                           on_epoch_end=keep_epoch, speed=speed)
        info = save(out, optimizer, {"epochs_trained": cfg.epochs, "epoch_train_loss": history,
                                     "seconds": round(time.time() - start, 2)})
        remove_file(out / CHECKPOINT)
    return info


def connect(start, end, out, curve: str = "bezier", bends: int = 1, free_endpoints: bool = False,
            dataset: str | None = None, model: str | None = None, epochs: int | None = None,
            lr: float | None = None, wd: float | None = None, batch_size: int | None = None, seed: int = 0,
            data_dir: str | None = None, device: str = "auto", resume: bool = False, progress: bool = True,
            speed: Speed = EAGER) -> dict:
    """Fit a curve between two trained networks into OUT: curve.safetensors and run.json (returned)."""
    bends = validate.nonnegative_int("--bends", bends)
    check_family(curve, bends + 2)
    if dataset is not None:
        recipe_for(dataset)
    sources = describe_endpoints([start, end], dataset, validate.model_name(model))
    cfg = training_config(recipe_for(sources[0].dataset).connect, epochs, lr, wd, batch_size, seed)
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    settings = {"start": str(Path(start).resolve()), "end": str(Path(end).resolve()), "dataset": sources[0].dataset,
                "model": sources[0].model.name,
                "curve": {"kind": curve, "bends": bends, "free_endpoints": free_endpoints}, "config": cfg.to_dict()}
    check_unfinished(out, "run.json", resume, settings)
    dev = join(device)
    ends = load_endpoints(sources, data_dir, dev)
    path = Curve(*ends.nets, kind=curve, bends=bends, free_endpoints=free_endpoints).to(dev)
    with claim_output(out, "run.json", resume, settings):
        began = time.time()
        history, _ = train_curve(path, ends.data, cfg, checkpoint=out / CHECKPOINT, resume=resume, settings=settings,
                                 progress=progress, desc=f"connect {out.name}", speed=speed)
        info = {"kind": "curve", "dataset": ends.dataset, "data_dir": ends.data_dir,
                "model": ends.model.to_dict(ends.data), "curve": settings["curve"], "start": str(start),
                "end": str(end), "config": cfg.to_dict(), "seed": cfg.seed, "speed": speed.to_dict(),
                "processes": distributed.world_size(), "made_with": made_with(ends.data.train_x.device),
                "epoch_train_loss": history, "seconds": round(time.time() - began, 2), "length": path.length(),
                **{f"midpoint_{k}": v
                   for k, v in metrics_with_bn(path.model_at(0.5), ends.data, speed=speed).to_dict().items()}}
        save_tensors(out / "curve.safetensors", path.state_dict(),
                     metadata={"kind": curve, "bends": str(bends), "names": ",".join(path.param_space.names)})
        write_json(out / "run.json", info)
        remove_file(out / CHECKPOINT)
    return info
