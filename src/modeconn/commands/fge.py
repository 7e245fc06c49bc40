"""`modeconn fge`: Fast Geometric Ensembling from a trained run (Garipov et al. 2018)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ModeconnError
from ..recipes import recipe_for
from ..reporting.plots import plot_fge
from ..storage.files import load_tensors, save_tensors
from ..storage.runfolder import CHECKPOINT, describe_network, load_endpoints
from ..training.fge import FGEConfig, FGEResult, fast_geometric_ensemble, snapshot_epochs
from ..training.schedule import check_cycle
from . import validate
from .common import RunFolder
from .options import REQUIRED, DataOptions, option
from .registry import command


@dataclass
class FGEOptions(DataOptions):
    start: str = option(REQUIRED, "a run folder from train (its optimizer state is restored)")
    out: str = option(REQUIRED, "the folder to write fge.json, fge.png, snapshots/ and swa.safetensors in")
    epochs: int | None = option(None, "epochs of cyclic training (default: the recipe's)")
    cycle: int | None = option(None, "cycle length in epochs, even (default: the recipe's)")
    lr1: float | None = option(None, "high learning rate, at cycle start and end")
    lr2: float | None = option(None, "low learning rate, at the cycle midpoint (snapshots)")
    wd: float | None = option(None, "weight decay (default: the start network's)")
    batch_size: int | None = option(None, "default: the start network's")
    seed: int = option(0, "seed of the data order")
    no_snapshots: bool = option(False, "do not save snapshot weights")
    resume: bool = option(False, "continue an unfinished FGE run with the same settings")


def _summary(result: FGEResult, o: FGEOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/fge.json and fge.png"


@command("fge", FGEOptions, help="Fast Geometric Ensembling from a trained network", summary=_summary)
def fge(o: FGEOptions) -> FGEResult:
    """FGE from a trained run folder into OUT: fge.json, fge.png, snapshots/ and swa.safetensors.

    Left-out options come from the dataset's recipe (cycle, lr1, lr2, epochs) and from the start
    network's own training (wd, batch size); its optimizer state is restored when present.
    """
    source = describe_network(o.start)
    if source.info is None:
        raise ModeconnError(f"{o.start} has no run.json: FGE starts from a run folder written by `modeconn train`")
    recipe = recipe_for(source.dataset).fge
    trained = source.info.raw.get("config", {})
    cfg = FGEConfig(epochs=validate.optional(validate.positive_int, "--epochs", o.epochs) or recipe.epochs,
                    cycle=validate.optional(validate.positive_int, "--cycle", o.cycle) or recipe.cycle,
                    lr1=validate.optional(validate.positive_float, "--lr1", o.lr1) or recipe.lr1,
                    lr2=validate.optional(validate.positive_float, "--lr2", o.lr2) or recipe.lr2,
                    wd=source.info.wd if o.wd is None else validate.nonnegative_float("--wd", o.wd),
                    batch_size=(validate.optional(validate.positive_int, "--batch-size", o.batch_size)
                                or trained.get("batch_size", 128)),
                    momentum=trained.get("momentum", 0.9), seed=validate.nonnegative_int("--seed", o.seed))
    check_cycle(cfg.cycle)
    if not snapshot_epochs(cfg.epochs, cfg.cycle):
        raise ModeconnError(f"--epochs {cfg.epochs} with --cycle {cfg.cycle} takes no snapshot (the first is after "
                            f"epoch {cfg.cycle // 2}); raise --epochs or shorten --cycle")
    data_dir = validate.data_dir(o.data_dir)
    settings = {"start": str(Path(o.start).resolve()), "fge": asdict(cfg), "snapshots": not o.no_snapshots}
    folder = RunFolder(o.out, "fge.json", resume=o.resume, settings=settings)
    opt_file = Path(o.start) / "optimizer.safetensors" if Path(o.start).is_dir() else None
    optimizer_state = load_tensors(opt_file) if opt_file is not None and opt_file.exists() else None
    dev = folder.join(o.device)
    ends = load_endpoints([source], data_dir, dev)
    with folder.claim() as out:
        result = fast_geometric_ensemble(ends.nets[0], ends.data, cfg, optimizer_state,
                                         None if o.no_snapshots else out / "snapshots", out / CHECKPOINT, o.resume,
                                         settings, o.progress, o.speed)
        if result.swa_state is not None:
            save_tensors(out / "swa.safetensors", result.swa_state)
        raw = source.info.raw
        result.start, result.start_resolved = str(o.start), str(Path(o.start).resolve())
        result.dataset, result.model = source.dataset, raw.get("model")
        result.optimizer_state_restored = optimizer_state is not None
        result.start_test_err, result.start_test_loss = raw.get("test_err"), raw.get("test_loss")
        if raw.get("full_run") is not None:  # a kept epoch: the run it belongs to trained on, for the same budget
            result.start_epochs_trained = raw.get("epochs_trained")
            result.start_full_run = str((Path(o.start) / raw["full_run"]).resolve())
        plot_fge(result, out / "fge.png")
        result.write(out)
    return result
