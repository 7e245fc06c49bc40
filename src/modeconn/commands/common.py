"""What several commands share: the ordered opening of an output folder (RunFolder), training options against a
recipe, evaluation settings, the device, and the files of a network run and of a path evaluation."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from ..config import TrainConfig
from ..evaluation.along import PathEval
from ..evaluation.evaluate import split_metrics
from ..evaluation.pointwise import EvalSettings
from ..recipes import recipe_for
from ..reporting.plots import plot_along
from ..runtime import distributed
from ..runtime.provenance import made_with
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import optimizer_tensors
from ..storage.files import remove_file, save_tensors
from ..storage.runfolder import CHECKPOINT, ModelSpec, RunInfo, check_unfinished, claim_output, write_run
from . import validate


def training_config(base: TrainConfig, epochs=None, lr=None, wd=None, batch_size=None, seed=0, optimizer=None,
                    schedule=None) -> TrainConfig:
    """The recipe's config with the options given on the command line, each checked."""
    return replace(base,
                   epochs=validate.optional(validate.positive_int, "--epochs", epochs) or base.epochs,
                   lr=validate.optional(validate.positive_float, "--lr", lr) or base.lr,
                   wd=base.wd if wd is None else validate.nonnegative_float("--wd", wd),
                   batch_size=validate.optional(validate.positive_int, "--batch-size", batch_size) or base.batch_size,
                   seed=validate.nonnegative_int("--seed", seed), optimizer=optimizer or base.optimizer,
                   schedule=schedule or base.schedule)


def eval_settings(wd: float, batch_size, bn_samples, train_samples) -> EvalSettings:
    """How each point is measured, every number checked."""
    return EvalSettings(wd=wd, batch_size=validate.positive_int("--batch-size", batch_size),
                        bn_samples=validate.optional(validate.positive_int, "--bn-samples", bn_samples),
                        train_samples=validate.optional(validate.positive_int, "--train-samples", train_samples))


def other_dataset(dataset: str | None) -> dict:
    """What a result records, and its resume fingerprint must match, of a `--dataset` given in place of the run's:
    {"dataset": NAME}, or nothing where the run's own data was measured (files as they always were)."""
    return {"dataset": dataset} if dataset is not None else {}


def fallback_model(dataset: str | None) -> str | None:
    """The architecture of a weights file without run.json (its --dataset given, --model not): the recipe's."""
    return recipe_for(dataset).model if dataset is not None else None


def join(device):
    """Choose the device (checked) and then, under torchrun, join the process group: this rank's device."""
    return distributed.setup(validate.device(device))


def path_points(points) -> int:
    """Points along a path: at least its two ends."""
    return validate.int_at_least("--points", points, 2, "t = 0 and t = 1 at least")


def write_path_eval(out: Path, result: PathEval, title: str) -> None:
    """A path evaluation's record (curve_eval.json or line_eval.json) and its figure beside it (.png)."""
    plot_along(result, (out / result.file).with_suffix(".png"), title)
    result.write(out)


def save_network_run(folder: Path, net, optimizer, info: dict, data, speed: Speed = EAGER,
                     metrics: dict | None = None) -> RunInfo:
    """Write a network run folder: model.safetensors, optimizer.safetensors (unless `optimizer` is None),
    then run.json (with final metrics: `split_metrics`'s, unless the caller measured them as `metrics`)."""
    info = {**info, **(metrics if metrics is not None else split_metrics(net, data, speed=speed).to_dict())}
    save_tensors(folder / "model.safetensors", net.state_dict())
    if optimizer is not None:
        save_tensors(folder / "optimizer.safetensors", optimizer_tensors(optimizer))
    return write_run(folder, info)  # last: a folder with run.json is complete


def task_field(task: str | None) -> dict:
    """run.json's `task` where one was given (`--task`); nothing for the data's own, so a classification run's
    files are what they always were."""
    return {} if task is None else {"task": task}


def network_info(dataset: str, data_dir, spec: ModelSpec, data, cfg, speed: Speed, task: str | None = None) -> dict:
    """The fields every network run.json starts with."""
    return {"kind": "network", "dataset": dataset, **task_field(task), "data_dir": data_dir,
            "model": spec.to_dict(data),
            "config": cfg.to_dict(), "seed": cfg.seed, "speed": speed.to_dict(), "processes": distributed.world_size(),
            "made_with": made_with(data.device)}


class RunFolder:
    """The ordered opening of the folder a command writes, so that no command can get the order wrong.

    1. At the door (the constructor, before anything is loaded): the output path is checked (a real
       write probe), and a folder in use, a finished result (replaced only with `force`; None: the
       command offers no --force) or an unfinished run without `resume` (or with other `settings`)
       is refused. Nothing is written.
    2. `join(device)`: the device is checked and, under torchrun, the process group joined.
    3. `with folder.claim(check) as out:` creates OUT, takes its lock and repeats the checks under it,
       with the command's own read-only `check(out)`; the block computes and writes. When the block
       succeeds the training checkpoint is removed; when it fails the lock file and the folders the
       claim made are removed where nothing else is in them. Claiming before joining is refused.

    `finished` is the file whose presence means OUT holds a finished result (None: a workspace the
    command continues, as `demo` and `budget` do).
    """

    def __init__(self, out, finished: str | None, *, resume: bool = False, settings: dict | None = None,
                 force: bool | None = None, option: str = "--out"):
        self.out = validate.output_folder(option, out)
        self.finished, self.resume, self.settings, self.force = finished, resume, settings, force
        check_unfinished(self.out, finished, resume, settings, force)
        self._joined = False

    @classmethod
    def file(cls, path, *, force: bool = False, option: str = "--out") -> RunFolder:
        """The opening of a single result file (`ensemble --out FILE.json`): its folder, the file as `finished`."""
        path = validate.output_file(option, path)
        return cls(path.parent, path.name, force=force, option=option)

    def join(self, device) -> torch.device:
        """Check the device and, under torchrun, join the process group: this rank's device."""
        self._joined = True
        return join(device)

    @contextlib.contextmanager
    def claim(self, check: Callable[[Path], object] | None = None) -> Iterator[Path]:
        """Create and lock OUT, check it again under the lock, run the block; remove the checkpoint on success."""
        if not self._joined:
            raise RuntimeError("RunFolder.claim before join: join the process group first, so every rank claims")
        with claim_output(self.out, self.finished, self.resume, self.settings, self.force, check) as out:
            yield out
            remove_file(out / CHECKPOINT)
