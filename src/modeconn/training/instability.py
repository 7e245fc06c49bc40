"""The record of an instability analysis (instability.json; Frankle et al. 2020, "Linear Mode Connectivity and
the Lottery Ticket Hypothesis"): the barrier between two copies spawned at each epoch."""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..evaluation.along import LineEval, PathEval, eval_path
from ..evaluation.pointwise import EvalSettings
from ..runtime import distributed
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import Checkpoint, check_settings, load_checkpoint, optimizer_tensors, save_checkpoint
from ..storage.files import load_state_into, load_tensors, make_dir, remove_file, save_tensors
from ..storage.record import Record
from ..storage.runfolder import CHECKPOINT
from ..tasks import metric_label
from .train import train_network

STABLE = 0.02  # Frankle et al.: a test-error barrier under 2% counts as linearly connected
COPY_SEED = 1000  # copy i trains with seed + COPY_SEED * (i + 1): its own data order and dropout


@dataclass
class InstabilityResult(Record):
    """What instability.json holds: per spawn epoch (`per_spawn`, ascending) the test-error and train-loss
    barriers (against the chord and the endpoints' mean), the copies' test errors and whether the line counts as
    stable (test-error barrier below `stable_below`); `first_stable_spawn` is the first such epoch, or None. For
    language modeling the test perplexity takes the error's place (`test_ppl_barrier`, ...), for a task with
    neither (regression) the test loss; stable then means a barrier below `stable_below` times the copies' mean.
    `config` is the parent's training config, `settings` the lines' evaluation settings."""

    dataset: str
    model: str
    config: dict
    spawn: list[int]
    points: int
    same_order: bool
    per_spawn: list[dict]
    settings: dict
    stable_below: float = STABLE

    kind = "instability"
    file = "instability.json"
    what = "an instability result"
    made_by = "instability"

    @property
    def first_stable_spawn(self) -> int | None:
        return next((r["spawn"] for r in self.per_spawn if r["stable"]), None)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "model": self.model, "config": self.config, "spawn": self.spawn,
                "points": self.points, "same_order": self.same_order, "stable_below": self.stable_below,
                "per_spawn": self.per_spawn, "first_stable_spawn": self.first_stable_spawn, "settings": self.settings}

    @classmethod
    def from_json(cls, obj, source: str) -> InstabilityResult:
        with cls.parsing(source):
            result = cls(obj["dataset"], obj["model"], obj["config"], obj["spawn"], obj["points"], obj["same_order"],
                         obj["per_spawn"], obj["settings"], obj["stable_below"])
            for row in result.per_spawn:
                row["spawn"], row[f"{result.headline}_barrier"], row["train_loss_barrier"], row["stable"]
            if not isinstance(result.config.get("epochs"), int):
                raise ValueError("config.epochs")
        return result

    @property
    def headline(self) -> str:
        """The metric whose barrier decides stability (`deciding_metric`)."""
        return deciding_metric(self.per_spawn)

    def describe(self) -> str:
        lead = self.headline
        rows = [f"  spawn {r['spawn']:>3}: {metric_label(lead).replace(' ', '-')} barrier {r[lead + '_barrier']:.4f}, "
                f"train-loss barrier {r['train_loss_barrier']:.4f}{'  (stable)' if r['stable'] else ''}"
                for r in self.per_spawn]
        return "\n".join(rows + [f"first stable spawn epoch: {self.first_stable_spawn}"])


def deciding_metric(per_spawn: list[dict]) -> str:
    """The metric whose barrier decides stability in an instability result's rows: test_err for classification,
    test_ppl for language modeling, test_loss for a task with neither (stable below 2% of the copies' mean)."""
    return next((m for m in ("test_ppl", "test_loss") if any(f"{m}_barrier" in r for r in per_spawn)), "test_err")


def spawn_file(store: Path, k: int) -> Path:
    """Where the parent's state (weights and momentum) at spawn epoch k is kept."""
    return Path(store) / "spawn" / f"epoch{k}.safetensors"


def copy_folder(store: Path, k: int, i: int) -> Path:
    """Copy i (0 or 1) spawned at epoch k."""
    return Path(store) / f"k{k}" / f"copy{i}"


def _save_weights(folder: Path, net: nn.Module, optimizer, cfg: TrainConfig, k: int) -> None:
    save_tensors(folder / "model.safetensors", net.state_dict())


def instability_analysis(make_model: Callable[[], nn.Module], data: DataSource, cfg: TrainConfig, spawn: list[int],
                         points: int = 11, settings: EvalSettings | None = None, *, same_order: bool = False,
                         store: Path | None = None, resume_settings: dict | None = None,
                         save_copy: Callable[[Path, nn.Module, object, TrainConfig, int], None] = _save_weights,
                         progress: bool = True, speed: Speed = EAGER) -> InstabilityResult:
    """Frankle et al. 2020's instability analysis: from which epoch do two copies of one network, trained on
    with different data orders, stay linearly connected?

    One parent (`make_model()`, seeded by `cfg.seed`) trains up to the last epoch of `spawn`, keeping its state
    (weights and momentum) at each: the shared prefix is trained once. From each kept state two copies train
    to `cfg.epochs` with seeds cfg.seed + 1000 (i + 1) (with `same_order`, one seed: a check, no barrier), and
    the line between them is measured at `points` t (`eval_path`, BN recomputed per point). Returns an
    InstabilityResult (`model` empty: the caller names it).

    With `store` (a folder) everything is resumable: the spawn states (spawn/epochK.safetensors), each copy
    (kK/copyI, written by `save_copy(folder, net, optimizer, copy_cfg, k)`, by default its weights) and each
    line (kK/line_eval.json); `resume_settings` must match a killed run's. Without it the checkpoints that
    carry a copy from its spawn epoch live in a temporary folder, removed on return. Under torchrun the
    parent trains data-parallel, the copies are dealt to the ranks, and the lines are measured sharded.
    Raises ModeconnError for no spawn epoch, one not before cfg.epochs, or points < 2.
    """
    ks = check_spawn(spawn, cfg.epochs, points)
    settings = settings or EvalSettings(wd=cfg.wd)
    # what a resumed store must have been started with: the analysis's own settings, and the caller's
    checks = {"config": cfg.to_dict(), "spawn": ks, "points": points, "same_order": same_order,
              "bn_samples": settings.bn_samples, "train_samples": settings.train_samples, **(resume_settings or {})}
    if store is not None:
        _check_store(Path(store), ks, checks)
    with tempfile.TemporaryDirectory(prefix="modeconn-instability-") if store is None else nullcontext(store) as root:
        root = Path(root)
        _train_parent(root, make_model, data, cfg, ks, checks, progress, speed)
        copies = [(k, i) for k in ks for i in range(2)]
        mine = [copies[j] for j in distributed.my_indices(len(copies))]  # dealt before `alone`, which hides ranks
        with distributed.alone():  # copies are independent: under torchrun each rank trains its share by itself
            for k, i in mine:
                _train_copy(root, k, i, make_model, data, cfg, checks, same_order, save_copy, progress, speed)
        distributed.barrier()
        rows = [_measure(root, k, make_model, data, points, settings, store is not None, progress, speed)
                for k in ks]
    return InstabilityResult(data.name, "", cfg.to_dict(), ks, points, same_order, rows, settings.__dict__)


def check_spawn(spawn: list[int], epochs: int, points: int) -> list[int]:
    """The spawn epochs sorted and without repeats; raises ModeconnError for none, a negative one, one not before
    `epochs` (its copies would train for no epochs), or fewer than 2 points on a line."""
    ks = sorted(set(spawn))
    if not ks or ks[0] < 0:
        raise ModeconnError(f"{param('spawn')} needs at least one epoch >= 0, got {spawn}")
    if ks[-1] >= epochs:
        raise ModeconnError(f"{param('spawn')} {ks[-1]} is not before {param('epochs')} {epochs}: copies "
                            f"spawned there would train for no epochs; spawn at epochs 0..{epochs - 1}")
    if points < 2:
        raise ModeconnError(f"{param('points')} must be >= 2 (t = 0 and t = 1 at least), got {points}")
    return ks


def _check_store(store: Path, ks: list[int], checks: dict) -> None:
    """Refuse a store that is a file, or one a run with other settings left (its parent's checkpoint or kept
    states say what it was started with), before anything is trained or written."""
    if store.exists() and not store.is_dir():
        raise ModeconnError(f"{store} is a file: {param('store', 'out')} must be a folder (or one to create)")
    for path in [store / CHECKPOINT, *(spawn_file(store, k) for k in ks)]:
        if path.exists():
            check_settings(path, checks)


def _train_parent(root: Path, make_model, data: DataSource, cfg: TrainConfig, ks: list[int], settings: dict,
                  progress: bool, speed: Speed) -> None:
    """Train the shared prefix once (resumable), keeping weights and momentum at each spawn epoch."""
    torch.manual_seed(cfg.seed)
    net = make_model()
    make_dir(root / "spawn")
    # Every rank decides from the same view of the folder, taken before anyone writes: a rank that
    # looked after rank 0 had written a state would skip the write's barrier and hang the others.
    kept = {k for k in ks if spawn_file(root, k).exists()}
    distributed.barrier()

    def keep(epoch: int, optimizer) -> None:
        if epoch in ks and epoch not in kept:
            save_checkpoint(spawn_file(root, epoch), Checkpoint(net.state_dict(), optimizer_tensors(optimizer), epoch,
                                                                [], settings))

    if 0 in ks and 0 not in kept:
        save_checkpoint(spawn_file(root, 0), Checkpoint(net.state_dict(), {}, 0, [], settings))
    if ks[-1] > 0 and ks[-1] not in kept:
        train_network(net, data, cfg, checkpoint=root / CHECKPOINT, resume=True, settings=settings,
                      progress=progress, desc="parent", on_epoch_end=lambda e, opt: keep(e + 1, opt),
                      stop_epoch=ks[-1], speed=speed)
    distributed.barrier()


def _train_copy(root: Path, k: int, i: int, make_model, data: DataSource, cfg: TrainConfig, settings: dict,
                same_order: bool, save_copy, progress: bool, speed: Speed) -> None:
    """Copy i spawned at epoch k, trained to the end of the schedule with its own data order (resumable: a copy
    is done once its weights are saved and its checkpoint removed)."""
    folder = copy_folder(root, k, i)
    if (folder / "model.safetensors").exists() and not (folder / CHECKPOINT).exists():
        return
    folder.mkdir(parents=True, exist_ok=True)
    copy_cfg = replace(cfg, seed=cfg.seed + COPY_SEED * (1 if same_order else i + 1))
    copy_settings = {**settings, "copy": {"spawn": k, "index": i, "seed": copy_cfg.seed}}
    if not (folder / CHECKPOINT).exists():
        start = load_checkpoint(spawn_file(root, k), settings)
        save_checkpoint(folder / CHECKPOINT, Checkpoint(start.module, start.optimizer, k, [], copy_settings))
    net = make_model()
    _, optimizer = train_network(net, data, copy_cfg, checkpoint=folder / CHECKPOINT, resume=True,
                                 settings=copy_settings, progress=progress, desc=f"k={k} copy {i}", speed=speed)
    save_copy(folder, net, optimizer, copy_cfg, k)
    remove_file(folder / CHECKPOINT)


def _measure(root: Path, k: int, make_model, data: DataSource, points: int, settings: EvalSettings, keep: bool,
             progress: bool, speed: Speed) -> dict:
    """The line between the two copies spawned at k (kept as kK/line_eval.json for a resume) and its barriers."""
    folder = root / f"k{k}"
    result: PathEval
    if keep and (folder / LineEval.file).exists():
        result = LineEval.read(folder)
    else:
        first, second = make_model(), make_model()
        for net, i in ((first, 0), (second, 1)):
            weights = copy_folder(root, k, i) / "model.safetensors"
            load_state_into(net, load_tensors(weights), str(weights))
        result = eval_path(None, first, second, data, points, settings, progress, speed)
        result.start, result.end = str(copy_folder(root, k, 0)), str(copy_folder(root, k, 1))
        if keep:
            result.write(folder)
    lead = result.headline  # test_err for classification, test_ppl for language modeling, else test_loss
    values = np.asarray(result.values("line", lead))
    barrier = result.stat("line", lead, "barrier")
    # Frankle et al.'s criterion is 2% of test error; for another metric, 2% of the copies' mean
    threshold = STABLE if lead == "test_err" else STABLE * float(values[[0, -1]].mean())
    return {"spawn": k, f"{lead}_barrier": barrier, "train_loss_barrier": result.stat("line", "train_loss", "barrier"),
            f"{lead}_mean_barrier": result.stat("line", lead, "mean_barrier"),
            "train_loss_mean_barrier": result.stat("line", "train_loss", "mean_barrier"),
            f"copies_{lead}": [float(values[0]), float(values[-1])], "stable": bool(barrier < threshold)}
