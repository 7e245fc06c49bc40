"""`modeconn train`: train one network into a run folder."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import load_dataset
from ..errors import ModeconnError
from ..recipes import recipe_for
from ..storage.runfolder import CHECKPOINT, ModelSpec, RunInfo, describe_network, load_network
from ..tasks import headline, metric_label
from ..training.train import train_network
from . import validate
from .common import RunFolder, network_info, save_network_run, task_field, training_config
from .options import REQUIRED, TASK_HELP, TrainingOptions, option
from .registry import command


@dataclass
class TrainOptions(TrainingOptions):
    out: str = option(REQUIRED, "the run folder to write")
    dataset: str = option("mnist1d", "mnist1d (default), fashion-mnist, fashion-mnist-32, cifar10, cifar100, or "
                                     "your own as package.module:callable")
    model: str | None = option(None, "registry name or your builder's package.module:callable (default: the "
                                     "dataset's default model)")
    task: str | None = option(None, TASK_HELP)
    keep_epochs: list[int] = option([], "also keep the state after these epochs as run folders OUT/epochN "
                                        "(e.g. FGE's start at 0.8B)", nargs="*")
    keep_every: int | None = option(None, "also keep every K-th epoch as OUT/epochN (a trajectory for "
                                          "landscape --directions pca)")
    init: str | None = option(None, "start from this network run's weights instead of a random initialisation "
                                    "(fine-tuning; its model unless --model names the same one; the optimizer "
                                    "starts fresh); recorded in run.json as init")


def _summary(run: RunInfo, o: TrainOptions) -> str:
    lead = headline(run.raw)  # test perplexity (language modeling), test error (classification), else test loss
    first = f"{metric_label(lead)} {run.raw[lead]:.4f}, " if lead != "test_loss" else ""
    return f"{o.out}: {first}test loss {run.raw['test_loss']:.4f} ({run.raw['seconds']:.1f} s)"


@command("train", TrainOptions, help="train one endpoint network", summary=_summary)
def train(o: TrainOptions) -> RunInfo:
    """Train one network into OUT: model.safetensors, optimizer.safetensors and run.json (its record is returned).

    With `init`, training starts from that network run's weights (fine-tuning, e.g. pre-trained on some topics of
    fortunes and fine-tuned on another), with a fresh optimizer and `seed` for the data order; run.json's `init`
    names the weights file.

    Each epoch in `keep_epochs` is also kept as a run folder OUT/epochN (e.g. the 0.8B state FGE
    starts from in the paper); its run.json names the run that went on (`full_run`). `keep_every` k
    keeps epochs k, 2k, ... as well (a trajectory for `landscape --directions pca`).
    """
    recipe = recipe_for(o.dataset)
    init_run = describe_network(o.init, dataset=o.dataset) if o.init is not None else None
    spec = ModelSpec(validate.model_name(o.model) or recipe.model, {}) if init_run is None else init_run.model
    if init_run is not None and o.model is not None and validate.model_name(o.model) != init_run.model.name:
        raise ModeconnError(f"--init {o.init} holds a {init_run.model.name} network, --model names {o.model}: leave "
                            "out --model to fine-tune the run's own")
    task = validate.task(o.task)
    cfg = training_config(recipe.train, o.epochs, o.lr, o.wd, o.batch_size, o.seed, o.optimizer, o.schedule)
    keep = {validate.positive_int("--keep-epochs", k) for k in o.keep_epochs}
    if keep and max(keep) > cfg.epochs:
        raise ModeconnError(f"--keep-epochs {max(keep)} is outside 1..{cfg.epochs} (the epochs trained)")
    every = validate.optional(validate.positive_int, "--keep-every", o.keep_every)
    kept = sorted(keep | (set(range(every, cfg.epochs, every)) if every else set()))
    data_dir = validate.data_dir(o.data_dir)
    init = {"init": str(init_run.weights.resolve())} if init_run is not None else {}
    settings = {"dataset": o.dataset, **task_field(task), "model": spec.name, "config": cfg.to_dict(),
                "keep_epochs": kept, **init}
    folder = RunFolder(o.out, "run.json", resume=o.resume, settings=settings)
    out = folder.out
    dev = folder.join(o.device)
    data = load_dataset(o.dataset, data_dir, task).to(dev)
    torch.manual_seed(cfg.seed)
    net = spec.build(data).to(dev) if init_run is None else load_network(init_run, data, dev)
    base = {**network_info(o.dataset, data_dir, spec, data, cfg, o.speed, task), **init}

    def save(folder: Path, optimizer, extra: dict) -> RunInfo:
        return save_network_run(folder, net, optimizer, {**base, **extra}, data, o.speed)

    def keep_epoch(epoch: int, optimizer) -> None:
        if epoch + 1 in kept:
            save(out / f"epoch{epoch + 1}", optimizer, {"epochs_trained": epoch + 1, "full_run": ".."})

    with folder.claim():
        start = time.time()
        history, optimizer = train_network(net, data, cfg, checkpoint=out / CHECKPOINT, resume=o.resume,
                                           settings=settings, progress=o.progress, desc=f"train {out.name}",
                                           on_epoch_end=keep_epoch, speed=o.speed)
        info = save(out, optimizer, {"epochs_trained": cfg.epochs, "epoch_train_loss": history,
                                     "seconds": round(time.time() - start, 2)})
    return info
