"""The paper's FGE table in miniature: single network, independent ensembles and FGE at equal budgets.

B is the epochs of one network's training. Per seed:
- single @1B: one network trained for B epochs (the paper's schedule);
- independent @2B: that network and a second one (another seed), probabilities averaged;
- FGE @1B: from the first network's state at 0.8B epochs, 0.2B epochs of cycles;
- FGE @2B: the same FGE run continued to 1.2B epochs of cycles (0.8B + 1.2B = 2B).
Every member's BatchNorm statistics are recomputed with a full training pass before evaluation.
"""
from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch

from .checkpoint import optimizer_tensors
from .data import Dataset
from .ensemble import RunningEnsemble
from .evaluate import recompute_bn
from .fge import FGEConfig, fast_geometric_ensemble
from .train import TrainConfig, train_network


def _members_metrics(models, data: Dataset, batch: int = 1000) -> dict:
    ens = RunningEnsemble(data.test_batches(batch), data.num_classes)
    for m in models:
        m = copy.deepcopy(m)
        recompute_bn(m, data.train_batches(batch, shuffle=False))
        ens.add(m)
    return ens.metrics()


def budget_seed(make_model, data: Dataset, train_cfg: TrainConfig, cycle: int, lr1: float, lr2: float,
                seed: int, progress: bool = True, two_budgets: bool = True) -> dict:
    """Test error and NLL of the four methods for one seed (only the 1B pair without `two_budgets`)."""
    B = train_cfg.epochs
    start_epoch = round(0.8 * B)
    fge_1b = B - start_epoch
    kept = {}

    def keep(epoch, optimizer):
        if epoch + 1 == start_epoch:
            kept["state"] = copy.deepcopy(net.state_dict())
            kept["optim"] = {k: v.clone() for k, v in optimizer_tensors(optimizer).items()}

    torch.manual_seed(seed)
    net = make_model()
    train_network(net, data, replace(train_cfg, seed=seed), on_epoch_end=keep, progress=progress,
                  desc=f"seed {seed}: network 1")
    rows = {"single@1B": _members_metrics([net], data)}
    if two_budgets:
        torch.manual_seed(seed + 1000)
        net2 = make_model()
        train_network(net2, data, replace(train_cfg, seed=seed + 1000), progress=progress,
                      desc=f"seed {seed}: network 2")
        rows["independent@2B"] = _members_metrics([net, net2], data)

    fge_net = make_model()
    fge_net.load_state_dict(kept["state"])
    cfg = FGEConfig(epochs=fge_1b + (B if two_budgets else 0), cycle=cycle, lr1=lr1, lr2=lr2, momentum=train_cfg.momentum,
                    wd=train_cfg.wd, batch_size=train_cfg.batch_size, seed=seed + 2000)
    result = fast_geometric_ensemble(fge_net, data, cfg, optimizer_state=kept["optim"], progress=progress)
    for label, spent in (("fge@1B", fge_1b), ("fge@2B", fge_1b + B)):
        taken = [r for r in result["snapshots"] if r["epoch"] <= spent]
        if taken:
            last = taken[-1]
            rows[label] = {"err": last["ensemble_test_err"], "nll": last["ensemble_test_nll"],
                           "ece": last["ensemble_test_ece"], "snapshots": len(taken)}
    return rows


def summarize_budget(per_seed: list[dict]) -> dict:
    """Mean and standard deviation over seeds of each method's error and NLL."""
    table = {}
    for method in per_seed[0]:
        vals = [s[method] for s in per_seed if method in s]
        table[method] = {k: {"mean": float(np.mean([v[k] for v in vals])), "std": float(np.std([v[k] for v in vals]))}
                         for k in ("err", "nll")}
        table[method]["snapshots"] = vals[0].get("snapshots")
    return table


def budget_markdown(table: dict, title: str) -> str:
    """The table as Markdown: test error (%) and NLL, mean ± std over seeds."""
    lines = [f"### {title}", "", "| method | budget | test error (%) | test NLL |", "|---|---|---|---|"]
    for method, r in table.items():
        name, budget = method.split("@")
        extra = f" ({r['snapshots']} snapshots)" if r.get("snapshots") else ""
        lines.append(f"| {name}{extra} | {budget} | {100 * r['err']['mean']:.2f} ± {100 * r['err']['std']:.2f} | "
                     f"{r['nll']['mean']:.4f} ± {r['nll']['std']:.4f} |")
    return "\n".join(lines) + "\n"


def budget_run(dataset: str, out, epochs: int, seeds=(0, 1, 2), cycle: int = 2, lr1: float = 0.1,
               lr2: float = 0.0005, lr: float | None = None, model: str | None = None, train_samples: int | None = None,
               data_dir: str | None = None, device="auto", progress: bool = True) -> dict:
    """Run the budget comparison for several seeds into `out` (budget.json, budget.md); finished seeds are kept."""
    from pathlib import Path

    from .checkpoint import read_json, write_json
    from .data import load_dataset
    from .errors import ModeconnError
    from .models import DEFAULT_MODEL
    from .runs import TRAIN_DEFAULTS, build, model_spec, resolve_device
    from .schedule import check_cycle

    check_cycle(cycle)
    if epochs < 5 or round(0.2 * epochs) < cycle // 2:
        raise ModeconnError(f"--epochs {epochs} leaves 0.2B = {0.2 * epochs:g} epochs for FGE, less than one "
                            f"snapshot with --cycle {cycle}; raise --epochs or shorten --cycle")
    device = resolve_device(device)
    data = load_dataset(dataset, data_dir)
    data = data.subset(train=train_samples).to(device)
    spec = model_spec(model or DEFAULT_MODEL.get(dataset, "mlp"), data)
    base = TRAIN_DEFAULTS.get(dataset, TrainConfig())
    train_cfg = replace(base, epochs=epochs, lr=lr or base.lr)
    settings = {"dataset": dataset, "model": spec, "B": epochs, "cycle": cycle, "lr1": lr1, "lr2": lr2,
                "train": train_cfg.to_dict(), "train_samples": len(data.train_x)}
    out = Path(out)
    path = out / "budget.json"
    state = read_json(path) if path.exists() else {"settings": settings, "per_seed": {}}
    if state["settings"] != settings:
        raise ModeconnError(f"{path} holds a comparison with other settings; choose another --out")
    for seed in seeds:
        if str(seed) in state["per_seed"]:
            continue
        state["per_seed"][str(seed)] = budget_seed(lambda: build(spec).to(device), data, train_cfg, cycle, lr1, lr2,
                                                   seed, progress)
        write_json(path, state)  # each finished seed survives a crash
    rows = [state["per_seed"][str(s)] for s in seeds]
    state["table"] = summarize_budget(rows)
    write_json(path, state)
    title = (f"{dataset}, {spec['name']}, B = {epochs} epochs, cycle {cycle}, lr1 {lr1}, lr2 {lr2}, "
             f"{len(seeds)} seeds")
    from .checkpoint import atomic_write

    atomic_write(out / "budget.md", budget_markdown(state["table"], title).encode())
    return state
