"""What several commands share: training options against a recipe, evaluation settings, the device,
and the files of a network run and of a path evaluation."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..config import TrainConfig
from ..errors import ModeconnError
from ..evaluation.along import PathEval
from ..evaluation.evaluate import split_metrics
from ..evaluation.pointwise import EvalSettings
from ..reporting.plots import plot_along
from ..runtime import distributed
from ..runtime.provenance import made_with
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import optimizer_tensors
from ..storage.files import save_tensors, write_json
from ..storage.runfolder import ModelSpec
from . import validate


def training_config(base: TrainConfig, epochs=None, lr=None, wd=None, batch_size=None, seed=0) -> TrainConfig:
    """The recipe's config with the options given on the command line, each checked."""
    return replace(base,
                   epochs=validate.optional(validate.positive_int, "--epochs", epochs) or base.epochs,
                   lr=validate.optional(validate.positive_float, "--lr", lr) or base.lr,
                   wd=base.wd if wd is None else validate.nonnegative_float("--wd", wd),
                   batch_size=validate.optional(validate.positive_int, "--batch-size", batch_size) or base.batch_size,
                   seed=validate.nonnegative_int("--seed", seed))


def eval_settings(wd: float, batch_size, bn_samples, train_samples) -> EvalSettings:
    """How each point is measured, every number checked."""
    return EvalSettings(wd=wd, batch_size=validate.positive_int("--batch-size", batch_size),
                        bn_samples=validate.optional(validate.positive_int, "--bn-samples", bn_samples),
                        train_samples=validate.optional(validate.positive_int, "--train-samples", train_samples))


def join(device):
    """Choose the device (checked) and then, under torchrun, join the process group: this rank's device."""
    return distributed.setup(validate.device(device))


def path_points(points) -> int:
    """Points along a path: at least its two ends."""
    if validate.positive_int("--points", points) < 2:
        raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
    return points


def write_path_eval(out: Path, result: PathEval, stem: str, title: str) -> None:
    """A path evaluation's STEM.json and its figure STEM.png."""
    plot_along(result, out / f"{stem}.png", title)
    write_json(out / f"{stem}.json", result.to_json())


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
