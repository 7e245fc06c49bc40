"""`modeconn fge` and `modeconn budget`: Fast Geometric Ensembling from a run, and the equal-budget comparison."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..data import load_dataset
from ..errors import ModeconnError
from ..recipes import recipe_for
from ..reporting.plots import plot_fge
from ..runtime.speed import EAGER, Speed
from ..storage.files import atomic_write, load_tensors, read_json, remove_file, save_tensors, write_json
from ..storage.runfolder import CHECKPOINT, ModelSpec, check_unfinished, claim_output, describe_network, load_endpoints
from ..training.budget import budget_markdown, budget_seed, summarize_budget
from ..training.fge import FGEConfig, FGEResult, fast_geometric_ensemble, snapshot_epochs
from ..training.schedule import check_cycle
from ..training.train import SPRO_VOLUME_WEIGHT
from . import validate
from .common import join, training_config


def fge(start, out, epochs: int | None = None, cycle: int | None = None, lr1: float | None = None,
        lr2: float | None = None, wd: float | None = None, batch_size: int | None = None, seed: int = 0,
        no_snapshots: bool = False, data_dir: str | None = None, device: str = "auto", resume: bool = False,
        progress: bool = True, speed: Speed = EAGER) -> FGEResult:
    """FGE from a trained run folder into OUT: fge.json, fge.png, snapshots/ and swa.safetensors.

    Left-out options come from the dataset's recipe (cycle, lr1, lr2, epochs) and from the start
    network's own training (wd, batch size); its optimizer state is restored when present.
    """
    source = describe_network(start)
    if source.info is None:
        raise ModeconnError(f"{start} has no run.json: FGE starts from a run folder written by `modeconn train`")
    recipe = recipe_for(source.dataset).fge
    trained = source.info.raw.get("config", {})
    cfg = FGEConfig(epochs=validate.optional(validate.positive_int, "--epochs", epochs) or recipe.epochs,
                    cycle=validate.optional(validate.positive_int, "--cycle", cycle) or recipe.cycle,
                    lr1=validate.optional(validate.positive_float, "--lr1", lr1) or recipe.lr1,
                    lr2=validate.optional(validate.positive_float, "--lr2", lr2) or recipe.lr2,
                    wd=source.info.wd if wd is None else validate.nonnegative_float("--wd", wd),
                    batch_size=(validate.optional(validate.positive_int, "--batch-size", batch_size)
                                or trained.get("batch_size", 128)),
                    momentum=trained.get("momentum", 0.9), seed=validate.nonnegative_int("--seed", seed))
    check_cycle(cfg.cycle)
    if not snapshot_epochs(cfg.epochs, cfg.cycle):
        raise ModeconnError(f"--epochs {cfg.epochs} with --cycle {cfg.cycle} takes no snapshot (the first is after "
                            f"epoch {cfg.cycle // 2}); raise --epochs or shorten --cycle")
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    settings = {"start": str(Path(start).resolve()), "fge": asdict(cfg), "snapshots": not no_snapshots}
    check_unfinished(out, "fge.json", resume, settings)
    opt_file = Path(start) / "optimizer.safetensors" if Path(start).is_dir() else None
    optimizer_state = load_tensors(opt_file) if opt_file is not None and opt_file.exists() else None
    dev = join(device)
    ends = load_endpoints([source], data_dir, dev)
    with claim_output(out, "fge.json", resume, settings):
        result = fast_geometric_ensemble(ends.nets[0], ends.data, cfg, optimizer_state,
                                         None if no_snapshots else out / "snapshots", out / CHECKPOINT, resume,
                                         settings, progress, speed)
        if result.swa_state is not None:
            save_tensors(out / "swa.safetensors", result.swa_state)
        raw = source.info.raw
        result.start, result.start_resolved = str(start), str(Path(start).resolve())
        result.dataset, result.model = source.dataset, raw.get("model")
        result.optimizer_state_restored = optimizer_state is not None
        result.start_test_err, result.start_test_loss = raw.get("test_err"), raw.get("test_loss")
        if raw.get("full_run") is not None:  # a kept epoch: the run it belongs to trained on, for the same budget
            result.start_epochs_trained = raw.get("epochs_trained")
            result.start_full_run = str((Path(start) / raw["full_run"]).resolve())
        plot_fge(result, out / "fge.png")
        write_json(out / "fge.json", result.to_json())
        remove_file(out / CHECKPOINT)
    return result


METHODS = ("fge", "espro")  # the comparison's ensemble methods: FGE always, ESPRO on request


def budget(out, epochs: int, dataset: str = "fashion-mnist", model: str | None = None, seeds=(0, 1, 2),
           cycle: int | None = None, lr: float | None = None, lr1: float | None = None, lr2: float | None = None,
           train_samples: int | None = None, method: str = "fge", volume_weight: float | None = None,
           data_dir: str | None = None, device: str = "auto", progress: bool = True, speed: Speed = EAGER) -> dict:
    """Single network vs independent ensemble vs FGE at budgets 1B and 2B over seeds: budget.json and budget.md.
    `method` "espro" adds ESPRO at 2B (a SPRO simplex around each seed's network, `volume_weight`).

    Finished seeds are kept, so a rerun of the same command continues.
    """
    recipe = recipe_for(dataset)
    spec = ModelSpec(validate.model_name(model) or recipe.model, {})
    cfg = training_config(recipe.train, epochs, lr, None, None, 0)
    cycle = validate.optional(validate.positive_int, "--cycle", cycle) or recipe.fge.cycle
    lr1 = validate.optional(validate.positive_float, "--lr1", lr1) or recipe.fge.lr1
    lr2 = validate.optional(validate.positive_float, "--lr2", lr2) or recipe.fge.lr2
    seeds = [validate.nonnegative_int("--seeds", s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ModeconnError(f"--seeds must list distinct seeds, got {seeds}")
    train_samples = validate.optional(validate.positive_int, "--train-samples", train_samples)
    if method not in METHODS:
        raise ModeconnError(f"--method {method!r} is not known: choose {' or '.join(METHODS)}")
    if volume_weight is not None and method != "espro":
        raise ModeconnError("--volume-weight sets ESPRO's simplexes: use it with --method espro")
    volume_weight = (SPRO_VOLUME_WEIGHT if volume_weight is None
                     else validate.nonnegative_float("--volume-weight", volume_weight))
    check_cycle(cycle)
    if cfg.epochs < 5 or round(0.2 * cfg.epochs) < cycle // 2:
        raise ModeconnError(f"--epochs {cfg.epochs} leaves 0.2B = {0.2 * cfg.epochs:g} epochs for FGE, less than one "
                            f"snapshot with --cycle {cycle}; raise --epochs or shorten --cycle")
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    dev = join(device)
    data = load_dataset(dataset, data_dir).subset(train=train_samples).to(dev)
    settings = {"dataset": dataset, "model": spec.to_dict(data), "B": cfg.epochs, "cycle": cycle, "lr1": lr1,
                "lr2": lr2, "train": cfg.to_dict(), "train_samples": len(data.train_x)}
    if method == "espro":  # older comparisons (FGE only) keep their settings, so they still continue
        settings.update(method=method, volume_weight=volume_weight)
    check_unfinished(out, None)  # a folder in use is refused as that
    _comparison_so_far(out, settings)  # at the door, and again under the lock
    with claim_output(out, None, check=lambda o: _comparison_so_far(o, settings)):
        path, state = out / "budget.json", _comparison_so_far(out, settings)
        for seed in seeds:
            if str(seed) in state["per_seed"]:
                continue
            state["per_seed"][str(seed)] = budget_seed(lambda: spec.build(data).to(dev), data, cfg, cycle, lr1, lr2,
                                                       seed, progress, speed=speed, espro=method == "espro",
                                                       volume_weight=volume_weight)
            write_json(path, state)  # each finished seed survives a crash
        state["table"] = summarize_budget([state["per_seed"][str(s)] for s in seeds])
        write_json(path, state)
        title = (f"{dataset}, {spec.name}, B = {cfg.epochs} epochs, cycle {cycle}, lr1 {lr1}, lr2 {lr2}, "
                 f"{len(seeds)} seeds")
        atomic_write(out / "budget.md", budget_markdown(state["table"], title).encode())
    return state


def _comparison_so_far(out: Path, settings: dict) -> dict:
    """OUT/budget.json as far as it got (seeds finished so far), refusing one made with other settings."""
    path = out / "budget.json"
    state = read_json(path) if path.exists() else {"settings": settings, "per_seed": {}}
    if not isinstance(state, dict) or state.get("settings") != settings or not isinstance(state.get("per_seed"), dict):
        raise ModeconnError(f"{path} holds a comparison with other settings; choose another --out")
    return state
