"""The paper's FGE table in miniature: single network, independent ensembles and FGE at equal budgets.

B is the epochs of one network's training. Per seed:
- single @1B: one network trained for B epochs (the paper's schedule);
- independent @2B: that network and a second one (another seed), probabilities averaged;
- FGE @1B: from the first network's state at 0.8B epochs, 0.2B epochs of cycles;
- FGE @2B: the same FGE run continued to 1.2B epochs of cycles (0.8B + 1.2B = 2B);
- ESPRO @2B (with `espro`): a simplex grown around the first network (SPRO, Benton et al. 2021),
  2 vertices of B/2 epochs each (B + B = 2B), ensembled over ESPRO_SAMPLES points drawn from it.
Every member's BatchNorm statistics are recomputed with a full training pass before evaluation.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..evaluation.batchnorm import recompute_bn
from ..evaluation.ensemble import RunningEnsemble, simplex_ensemble
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import optimizer_tensors
from ..storage.record import Record
from ..tasks import check_task, metric_label
from .fge import FGEConfig, fast_geometric_ensemble
from .schedule import check_cycle
from .spro import SPRO_LR, first_stage, grow_simplex
from .train import SPRO_VOLUME_WEIGHT, train_network

ESPRO_SAMPLES = 10  # points drawn from the simplex for its ensemble


def _members_metrics(models, data: DataSource, speed: Speed, batch: int = 1000) -> dict:
    ens = RunningEnsemble(data.test_batches(batch), data.num_classes, speed, data.task)
    for m in models:
        m = copy.deepcopy(m)
        recompute_bn(m, data.bn_batches(batch), speed, data.task)
        ens.add(m)
    return ens.metrics().to_dict()


def budget_seed(make_model, data: DataSource, train_cfg: TrainConfig, cycle: int, lr1: float, lr2: float,
                seed: int, progress: bool = True, two_budgets: bool = True, speed: Speed = EAGER,
                espro: bool = False, volume_weight: float = SPRO_VOLUME_WEIGHT) -> dict:
    """Test error and NLL of the four methods for one seed (only the 1B pair without `two_budgets`),
    and of ESPRO at 2B with `espro`."""
    B = train_cfg.epochs
    start_epoch = round(0.8 * B)
    fge_1b = B - start_epoch
    kept: dict[str, dict[str, torch.Tensor]] = {}  # the network's and its optimizer's tensors at start_epoch

    def keep(epoch, optimizer):
        if epoch + 1 == start_epoch:
            kept["state"] = copy.deepcopy(net.state_dict())
            kept["optim"] = {k: v.clone() for k, v in optimizer_tensors(optimizer).items()}

    torch.manual_seed(seed)
    net = make_model()
    train_network(net, data, replace(train_cfg, seed=seed), on_epoch_end=keep, progress=progress,
                  desc=f"seed {seed}: network 1", speed=speed)
    rows = {"single@1B": _members_metrics([net], data, speed)}
    if two_budgets:
        torch.manual_seed(seed + 1000)
        net2 = make_model()
        train_network(net2, data, replace(train_cfg, seed=seed + 1000), progress=progress,
                      desc=f"seed {seed}: network 2", speed=speed)
        rows["independent@2B"] = _members_metrics([net, net2], data, speed)

    fge_net = make_model()
    fge_net.load_state_dict(kept["state"])
    cfg = FGEConfig(epochs=fge_1b + (B if two_budgets else 0), cycle=cycle,
                    lr1=lr1, lr2=lr2, momentum=train_cfg.momentum,
                    wd=train_cfg.wd, batch_size=train_cfg.batch_size, seed=seed + 2000)
    result = fast_geometric_ensemble(fge_net, data, cfg, optimizer_state=kept["optim"], progress=progress, speed=speed)
    for label, spent in (("fge@1B", fge_1b), ("fge@2B", fge_1b + B)):
        taken = [r for r in result.snapshots if r["epoch"] <= spent]
        if taken:
            last = taken[-1]
            rows[label] = {**{k: last[f"ensemble_test_{k}"] for k in data.task.ensemble_metrics},
                           "snapshots": len(taken)}
    if espro:
        rows["espro@2B"] = _espro(net, data, train_cfg, volume_weight, seed, progress, speed)
    return rows


def compare_budgets(make_model, data: DataSource, train_cfg: TrainConfig, cycle: int, lr1: float, lr2: float,
                    seeds: list[int], *, espro: bool = False, volume_weight: float = SPRO_VOLUME_WEIGHT,
                    settings: dict | None = None, store: Path | None = None, progress: bool = True,
                    speed: Speed = EAGER) -> BudgetResult:
    """Garipov et al. 2018's equal-budget comparison (Table 2): for each seed, one network trained for B =
    `train_cfg.epochs` epochs, an ensemble of two independent ones (2B), and FGE from the network's state at
    0.8B with cycles of `cycle` epochs between `lr1` and `lr2` (1B and 2B); with `espro`, ESPRO at 2B (a
    2-vertex SPRO simplex around the network, Benton et al. 2021). `make_model()` builds a fresh network on
    the data's device. Returns a BudgetResult whose `table` holds the mean and std over seeds.

    With `store` (a folder) budget.json is rewritten after each seed, and the seeds it holds are kept, so a
    rerun continues; it must hold the same `settings` (anything that identifies the comparison). Raises
    ModeconnError for no seeds, repeated seeds, or a store of another comparison.
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ModeconnError(f"{param('seeds')} must list distinct seeds, got {seeds}")
    check_budget(train_cfg.epochs, cycle)
    check_task(data.task)
    if store is not None and Path(store).exists() and not Path(store).is_dir():
        raise ModeconnError(f"{store} is a file: {param('store', 'out')} must be a folder (or one to create)")
    # what a stored comparison must have been made with: the comparison's own settings, and the caller's
    own = {"B": train_cfg.epochs, "cycle": cycle, "lr1": lr1, "lr2": lr2, "train": train_cfg.to_dict(),
           **({"method": "espro", "volume_weight": volume_weight} if espro else {})}
    state = comparison_so_far(store, {**own, **(settings or {})})
    for seed in seeds:
        if str(seed) in state.per_seed:
            continue
        state.per_seed[str(seed)] = budget_seed(make_model, data, train_cfg, cycle, lr1, lr2, seed, progress,
                                                speed=speed, espro=espro, volume_weight=volume_weight)
        if store is not None:
            state.write(store)  # each finished seed survives a crash
    state.table = summarize_budget([state.per_seed[str(s)] for s in seeds])
    if store is not None:
        state.write(store)
    return state


def check_budget(epochs: int, cycle: int) -> None:
    """Refuse a budget B = `epochs` that leaves FGE (from 0.8B) less than one snapshot with cycles of `cycle`
    epochs, or a cycle that is not an even number of epochs."""
    check_cycle(cycle)
    if epochs < 5 or round(0.2 * epochs) < cycle // 2:
        raise ModeconnError(f"{param('epochs')} {epochs} leaves 0.2B = {0.2 * epochs:g} epochs for FGE, less than "
                            f"one snapshot with {param('cycle')} {cycle}; raise {param('epochs')} or shorten "
                            f"{param('cycle')}")


def comparison_so_far(store: Path | None, settings: dict) -> BudgetResult:
    """STORE/budget.json as far as it got (the seeds finished so far), refusing one made with other settings;
    writes nothing (a command checks it at the door and again under its folder's lock)."""
    path = None if store is None else Path(store) / BudgetResult.file
    if path is None or not path.exists():
        return BudgetResult(settings, {})
    try:
        state = BudgetResult.read(path)
    except ModeconnError:  # another result in its place: refused like another comparison's, never overwritten
        state = None
    if state is None or state.settings != settings:
        raise ModeconnError(f"{path} holds a comparison with other settings (or none at all); choose another "
                            f"{param('store', 'out')}")
    return state


def _espro(net, data: DataSource, train_cfg: TrainConfig, volume_weight: float, seed: int, progress: bool,
           speed: Speed) -> dict:
    """A 2-vertex SPRO simplex around `net` in B epochs, ensembled over ESPRO_SAMPLES uniform points."""
    cfg = replace(train_cfg, epochs=max(1, train_cfg.epochs // 2), lr=SPRO_LR, seed=seed + 3000)
    simplex = grow_simplex(first_stage([net]), data, cfg, 2, volume_weight, progress=progress, speed=speed)
    ensemble = simplex_ensemble(simplex, data, ESPRO_SAMPLES, seed + 4000, progress=False, speed=speed).ensemble
    return {**ensemble.to_dict(), "samples": ESPRO_SAMPLES, "volume": float(simplex.volume().detach())}


@dataclass
class BudgetResult(Record):
    """What budget.json holds: the comparison's `settings`, each finished seed's row per method
    (`per_seed["0"]["fge@1B"]`: err, nll, and snapshots or samples) and, once every seed is done, `table`: per
    method the mean and standard deviation over seeds (`summarize_budget`)."""

    settings: dict
    per_seed: dict[str, dict]
    table: dict | None = None

    kind = "budget"
    file = "budget.json"

    def to_json(self) -> dict:
        return {"settings": self.settings, "per_seed": self.per_seed,
                **({"table": self.table} if self.table is not None else {})}

    @classmethod
    def from_json(cls, obj, source: str) -> BudgetResult:
        if not isinstance(obj, dict) or not isinstance(obj.get("settings"), dict) \
                or not isinstance(obj.get("per_seed"), dict) or not isinstance(obj.get("table", {}), dict):
            raise ModeconnError(f"{source} is not a budget comparison (no settings, per_seed or table object); "
                                "rerun `modeconn budget`")
        return cls(obj["settings"], obj["per_seed"], obj.get("table"))

    def describe(self) -> str:
        if self.table is None:
            return f"budget comparison: {len(self.per_seed)} seed(s) finished"
        if all("err" in r for r in self.table.values()):
            return "budget comparison, test error over seeds: " + ", ".join(
                f"{method} {100 * r['err']['mean']:.2f}%" for method, r in self.table.items())
        first = next(k for k in next(iter(self.table.values())) if k not in ("snapshots", "samples"))
        return f"budget comparison, {metric_label('test_' + first)} over seeds: " + ", ".join(
            f"{method} {r[first]['mean']:.4f}" for method, r in self.table.items())


def summarize_budget(per_seed: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each method's ensemble metrics: error and NLL for
    classification (its calibration error stays in the per-seed rows), every ensemble metric for other tasks."""
    table = {}
    for method in per_seed[0]:
        vals = [s[method] for s in per_seed if method in s]
        table[method] = {k: {"mean": float(np.mean([v[k] for v in vals])), "std": float(np.std([v[k] for v in vals]))}
                         for k in _summarized(vals[0])}
        table[method]["snapshots"] = vals[0].get("snapshots")
        table[method]["samples"] = vals[0].get("samples")
    return table


def _summarized(row: dict) -> list[str]:
    """The metrics of one method's row that the table summarises (not its snapshots, samples or volume)."""
    if "err" in row and "nll" in row:  # classification: error and NLL, as the paper's Table 2
        return ["err", "nll"]
    return [k for k in row if k not in ("snapshots", "samples", "volume")]


def budget_markdown(table: dict, title: str) -> str:
    """The table as Markdown: test error (%) and NLL for classification, every ensemble metric otherwise, mean ±
    std over seeds."""
    metrics = [k for k in next(iter(table.values())) if k not in ("snapshots", "samples")] if table else []
    heads = ["test error (%)" if k == "err" else "test NLL" if k == "nll" else metric_label("test_" + k)
             for k in metrics]
    lines = [f"### {title}", "", f"| method | budget | {' | '.join(heads)} |", "|---|---|" + "---|" * len(heads)]
    for method, r in table.items():
        name, budget = method.split("@")
        extra = (f" ({r['snapshots']} snapshots)" if r.get("snapshots")
                 else f" ({r['samples']} points of a 2-vertex simplex)" if r.get("samples") else "")
        cells = [f"{100 * r[k]['mean']:.2f} ± {100 * r[k]['std']:.2f}" if k == "err"
                 else f"{r[k]['mean']:.4f} ± {r[k]['std']:.4f}" for k in metrics]
        lines.append(f"| {name}{extra} | {budget} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
