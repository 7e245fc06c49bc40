"""Fast Geometric Ensembling: cyclic-lr SGD from a trained network, a snapshot at each cycle's midpoint.

Each snapshot's BatchNorm statistics are recomputed with a full pass over the training data
(as everywhere in modeconn) on a copy, so snapshots are evaluated exactly and training goes on
undisturbed. The ensemble averages the snapshots' probabilities in a running sum; the SWA model
(the snapshots' weight average, `torch.optim.swa_utils.AveragedModel`) comes for free.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn
from torch.optim.swa_utils import AveragedModel

from .checkpoint import remove_file, save_tensors
from .data import Dataset
from .ensemble import RunningEnsemble
from .evaluate import evaluate, recompute_bn
from .schedule import check_cycle, fge_lr
from .train import TrainConfig, fit


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


class _FGEState:
    """What FGE accumulates: the running ensemble, the SWA average, one record per snapshot."""

    def __init__(self, model: nn.Module, data: Dataset, cfg: FGEConfig):
        self.ensemble = RunningEnsemble(data.test_batches(cfg.eval_batch), data.num_classes)
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


def fast_geometric_ensemble(model: nn.Module, data: Dataset, cfg: FGEConfig, optimizer_state: dict | None = None,
                            snapshot_dir: Path | None = None, checkpoint: Path | None = None,
                            progress: bool = True) -> dict:
    """Run FGE from a trained `model` (changed in place); returns per-snapshot records and SWA metrics."""
    check_cycle(cfg.cycle)
    state = _FGEState(model, data, cfg)
    steps = len(data.train_batches(cfg.batch_size))
    bn_batches = data.train_batches(cfg.eval_batch, shuffle=False)
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
        recompute_bn(snap, bn_batches)
        own = state.ensemble.add(snap)
        ens = state.ensemble.metrics()
        state.swa.update_parameters(model)
        k = len(state.records) + 1
        state.records.append({"snapshot": k, "epoch": epoch + 1, "iteration": (epoch + 1) * steps,
                              "lr": last_lr["lr"], "test_err": own["err"], "test_nll": own["nll"],
                              "ensemble_test_err": ens["err"], "ensemble_test_nll": ens["nll"],
                              "ensemble_test_ece": ens["ece"]})
        if snapshot_dir is not None:
            save_tensors(snapshot_dir / f"snapshot_{k:03d}.safetensors", snap.state_dict())

    fit(model, list(model.parameters()), lambda forward, x, y, _g: nn.functional.cross_entropy(forward(x), y), data,
        cfg.train_config(), lr_at=lr_at, checkpoint=checkpoint, progress=progress, desc="fge",
        on_epoch_end=on_epoch_end, optimizer_state=optimizer_state, weight_decay=cfg.wd, extra_state=state)
    result = {"config": asdict(cfg), "snapshots": state.records}
    if state.records:
        swa_model = state.swa.module
        recompute_bn(swa_model, bn_batches)
        own = evaluate(swa_model, data.test_batches(cfg.eval_batch))
        result["swa"] = {"test_err": own["err"], "test_nll": own["loss"], "snapshots_averaged": len(state.records)}
        result["swa_state"] = swa_model.state_dict()
    return result


def fge_run(start, out, cfg: FGEConfig, save_snapshots: bool = True, device="auto", resume: bool = False,
            progress: bool = True) -> dict:
    """FGE from a trained run folder into `out`: fge.json, fge.png, snapshots and the SWA model."""
    from .checkpoint import load_tensors, prepare_out_dir, write_json
    from .data import load_dataset
    from .plots import plot_fge
    from .runs import load_network, network_info, resolve_device

    check_cycle(cfg.cycle)
    device = resolve_device(device)
    info = network_info(start)
    data = load_dataset(info["dataset"], info.get("data_dir")).to(device)
    model = load_network(start, data, info["model"], device)
    opt_file = Path(start) / "optimizer.safetensors" if Path(start).is_dir() else None
    optimizer_state = load_tensors(opt_file) if opt_file is not None and opt_file.exists() else None
    out = prepare_out_dir(out, resume, finished_file="fge.json")
    snap_dir = out / "snapshots" if save_snapshots else None
    result = fast_geometric_ensemble(model, data, cfg, optimizer_state, snap_dir, out / "checkpoint.safetensors",
                                     progress)
    swa_state = result.pop("swa_state", None)
    if swa_state is not None:
        save_tensors(out / "swa.safetensors", swa_state)
    result.update(start=str(start), start_resolved=str(Path(start).resolve()), dataset=info["dataset"], model=info["model"],
                  optimizer_state_restored=optimizer_state is not None,
                  start_test_err=info.get("test_err"), start_test_loss=info.get("test_loss"))
    plot_fge(result, out / "fge.png")
    write_json(out / "fge.json", result)
    remove_file(out / "checkpoint.safetensors")
    return result
