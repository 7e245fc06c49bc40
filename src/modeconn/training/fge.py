"""Fast Geometric Ensembling: cyclic-lr SGD from a trained network, a snapshot at each cycle's midpoint.

Each snapshot's BatchNorm statistics are recomputed with a full pass over the training data
(as everywhere in modeconn) on a copy, so snapshots are evaluated exactly and training goes on
undisturbed. The ensemble averages the snapshots' probabilities in a running sum; the SWA model
(the snapshots' weight average, `torch.optim.swa_utils.AveragedModel`) comes for free.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from torch import nn
from torch.optim.swa_utils import AveragedModel

from ..config import TrainConfig
from ..data.datasets import DataSource
from ..errors import ModeconnError
from ..evaluation.batchnorm import recompute_bn
from ..evaluation.ensemble import RunningEnsemble, member_record
from ..evaluation.evaluate import evaluate
from ..runtime.speed import EAGER, Speed
from ..storage.files import save_tensors
from ..storage.record import Record
from ..tasks import metric_label
from .schedule import check_cycle, fge_lr
from .train import Checkpointing, Hooks, fit


@dataclass
class FGEConfig:
    """FGE hyperparameters: epochs of cycling, cycle length in epochs (even), high and low lr."""

    epochs: int = 20
    cycle: int = 4
    lr1: float = 0.05
    lr2: float = 0.0005
    momentum: float = 0.9
    wd: float = 5e-4
    batch_size: int = 128
    seed: int = 0
    eval_batch: int = 1000

    def train_config(self) -> TrainConfig:
        return TrainConfig(epochs=self.epochs, lr=self.lr1, momentum=self.momentum, wd=self.wd,
                           batch_size=self.batch_size, seed=self.seed)


def snapshot_epochs(epochs: int, cycle: int) -> list[int]:
    """1-based epochs after which FGE takes a snapshot: the middle of every cycle."""
    check_cycle(cycle)
    return [e for e in range(1, epochs + 1) if (e - 1) % cycle + 1 == cycle // 2]


@dataclass
class FGEResult(Record):
    """What fge.json holds: one record per snapshot (its own and the ensemble-so-far's metrics), SWA, provenance.

    The algorithm fills config, snapshots and swa; the `fge` command adds where it started from.
    """

    config: dict
    snapshots: list[dict]
    swa: dict | None = None
    start: str | None = None
    start_resolved: str | None = None
    dataset: str | None = None
    model: dict | None = None
    optimizer_state_restored: bool = False
    start_test_err: float | None = None
    start_test_loss: float | None = None
    start_epochs_trained: int | None = None  # of the start network, when it was a kept epoch
    start_full_run: str | None = None        # the run that went on training from it (same budget), if any
    swa_state: dict | None = field(default=None, repr=False)  # weights, written to swa.safetensors

    kind = "fge"
    file = "fge.json"

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "swa_state"}

    @classmethod
    def from_json(cls, obj: dict, source: str = "fge.json") -> FGEResult:
        if (not isinstance(obj, dict) or not isinstance(obj.get("snapshots"), list)
                or not isinstance(obj.get("config"), dict)):
            raise ModeconnError(f"{source} is not an FGE result (no snapshots list or config); rerun `modeconn fge`")
        known = {f.name for f in fields(cls)} - {"swa_state"}
        return cls(**{k: v for k, v in obj.items() if k in known})

    def describe(self) -> str:
        if not self.snapshots:
            return "FGE: no snapshots"
        last = self.snapshots[-1]
        if "ensemble_test_nll" in last:  # classification, worded as it always was
            return (f"FGE: {len(self.snapshots)} snapshots; ensemble test error {last['ensemble_test_err']:.4f}, "
                    f"NLL {last['ensemble_test_nll']:.4f} (start network: {self.start_test_err}, "
                    f"{self.start_test_loss})")
        ensemble = {k.removeprefix("ensemble_"): v for k, v in last.items() if k.startswith("ensemble_")}
        start = f" (start network: test loss {self.start_test_loss:.4f})" if self.start_test_loss is not None else ""
        return (f"FGE: {len(self.snapshots)} snapshot{'s' if len(self.snapshots) > 1 else ''}; ensemble "
                + ", ".join(f"{metric_label(k)} {v:.4f}" for k, v in ensemble.items()) + start)


class _FGEState:
    """What FGE accumulates: the running ensemble, the SWA average, one record per snapshot."""

    def __init__(self, model: nn.Module, data: DataSource, cfg: FGEConfig, speed: Speed):
        self.ensemble = RunningEnsemble(data.test_batches(cfg.eval_batch), data.num_classes, speed, data.task)
        self.swa = AveragedModel(model)
        self.records: list[dict] = []

    def get_extra(self):
        tensors = {f"ens.{k}": v for k, v in self.ensemble.state().items()}
        tensors.update({f"swa.{k}": v for k, v in self.swa.state_dict().items()})
        return tensors, {"records": json.dumps(self.records)}

    def set_extra(self, tensors, meta):
        self.ensemble.load({k[4:]: v for k, v in tensors.items() if k.startswith("ens.")})
        self.swa.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("swa.")})
        self.records = json.loads(meta.get("records", "[]"))


def fast_geometric_ensemble(model: nn.Module, data: DataSource, cfg: FGEConfig, optimizer_state: dict | None = None,
                            snapshot_dir: Path | None = None, checkpoint: Path | None = None, resume: bool = False,
                            settings: dict | None = None, progress: bool = True, speed: Speed = EAGER) -> FGEResult:
    """Run FGE from a trained `model` (changed in place): per-snapshot records and the SWA model's metrics."""
    check_cycle(cfg.cycle)
    state = _FGEState(model, data, cfg, speed)
    steps = len(data.train_batches(cfg.batch_size))
    bn_batches = data.bn_batches(cfg.eval_batch)
    take = set(snapshot_epochs(cfg.epochs, cfg.cycle))
    last_lr = {"lr": cfg.lr1}

    def lr_at(progress_fraction: float) -> float:
        epoch_pos = progress_fraction * cfg.epochs  # epochs elapsed, fractional
        lr = fge_lr(cfg.lr1, cfg.lr2, (epoch_pos % cfg.cycle) / cfg.cycle)
        last_lr["lr"] = lr
        return lr

    def on_epoch_end(epoch: int, _optimizer) -> None:
        if epoch + 1 not in take:
            return
        snap = copy.deepcopy(model)
        recompute_bn(snap, bn_batches, speed, data.task)
        own = state.ensemble.add(snap)
        state.swa.update_parameters(model)
        k = len(state.records) + 1
        state.records.append({"snapshot": k, "epoch": epoch + 1, "iteration": (epoch + 1) * steps,
                              "lr": last_lr["lr"], **member_record(own, state.ensemble.metrics())})
        if snapshot_dir is not None:
            save_tensors(snapshot_dir / f"snapshot_{k:03d}.safetensors", snap.state_dict())

    fit(model, list(model.parameters()), lambda forward, x, y, _g: data.task.loss(forward(x), y), data,
        cfg.train_config(), lr_at=lr_at, weight_decay=cfg.wd, optimizer_state=optimizer_state,
        checkpointing=Checkpointing(checkpoint, resume, settings if settings is not None else {"fge": asdict(cfg)},
                                    extra=state),
        hooks=Hooks(progress, "fge", on_epoch_end), speed=speed)
    result = FGEResult(config=asdict(cfg), snapshots=state.records)
    if state.records:
        swa_model = state.swa.module
        recompute_bn(swa_model, bn_batches, speed, data.task)
        own = evaluate(swa_model, data.test_batches(cfg.eval_batch), speed, data.task)
        # classification's mean cross-entropy is the NLL its snapshots are recorded by
        named = {"err": own.err, "nll": own.loss} if data.task.name == "classification" else dict(own)
        result.swa = {**{f"test_{k}": v for k, v in named.items()}, "snapshots_averaged": len(state.records)}
        result.swa_state = swa_model.state_dict()
    return result
