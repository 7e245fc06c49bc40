"""`modeconn budget`: FGE vs single network vs independent ensembles at 1B and 2B, over seeds."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import load_dataset
from ..errors import ModeconnError
from ..recipes import recipe_for
from ..storage.files import atomic_write
from ..storage.runfolder import ModelSpec
from ..training.budget import BudgetResult, budget_markdown, check_budget, compare_budgets, comparison_so_far
from ..training.train import SPRO_VOLUME_WEIGHT
from . import validate
from .common import RunFolder, task_field, training_config
from .options import REQUIRED, TASK_HELP, DataOptions, option
from .registry import command

METHODS = ("fge", "espro")  # the comparison's ensemble methods: FGE always, ESPRO on request


@dataclass
class BudgetOptions(DataOptions):
    out: str = option(REQUIRED, "the folder to write budget.json and budget.md in")
    epochs: int = option(REQUIRED, "B: epochs of one network's training")
    dataset: str = option("fashion-mnist", "the dataset (or your own as package.module:callable)")
    task: str | None = option(None, TASK_HELP)
    model: str | None = option(None, "registry name or your builder's package.module:callable (default: the "
                                     "dataset's default model)")
    seeds: list[int] = option([0, 1, 2], "the seeds compared", nargs="+")
    cycle: int | None = option(None, "FGE cycle in epochs (default: the recipe's)")
    lr: float | None = option(None, "initial lr of normal training (default: the recipe's)")
    lr1: float | None = option(None, "FGE high lr (default: the recipe's)")
    lr2: float | None = option(None, "FGE low lr (default: the recipe's)")
    train_samples: int | None = option(None, "train on the first N training examples")
    method: str = option("fge", "fge (the paper's table) or espro (adds ESPRO at 2B: a SPRO simplex around each "
                                "network, Benton et al. 2021)")
    volume_weight: float | None = option(None, "ESPRO's weight of -log(volume + 1e-4) (default: Benton et al.'s, "
                                               "1e-8)")


def _summary(state: BudgetResult, o: BudgetOptions) -> str:
    return (Path(o.out) / "budget.md").read_text()


@command("budget", BudgetOptions, help="FGE vs single network vs independent ensembles at 1B and 2B, over seeds",
         summary=_summary)
def budget(o: BudgetOptions) -> BudgetResult:
    """Single network vs independent ensemble vs FGE at budgets 1B and 2B over seeds: budget.json and budget.md.
    `method` "espro" adds ESPRO at 2B (a SPRO simplex around each seed's network, `volume_weight`).

    Finished seeds are kept, so a rerun of the same command continues.
    """
    recipe = recipe_for(o.dataset)
    spec = ModelSpec(validate.model_name(o.model) or recipe.model, {})
    task = validate.task(o.task)
    cfg = training_config(recipe.train, o.epochs, o.lr, None, None, 0)
    cycle = validate.optional(validate.positive_int, "--cycle", o.cycle) or recipe.fge.cycle
    lr1 = validate.optional(validate.positive_float, "--lr1", o.lr1) or recipe.fge.lr1
    lr2 = validate.optional(validate.positive_float, "--lr2", o.lr2) or recipe.fge.lr2
    seeds = [validate.nonnegative_int("--seeds", s) for s in o.seeds]
    train_samples = validate.optional(validate.positive_int, "--train-samples", o.train_samples)
    if o.method not in METHODS:
        raise ModeconnError(f"--method {o.method!r} is not known: choose {' or '.join(METHODS)}")
    if o.volume_weight is not None and o.method != "espro":
        raise ModeconnError("--volume-weight sets ESPRO's simplexes: use it with --method espro")
    volume_weight = (SPRO_VOLUME_WEIGHT if o.volume_weight is None
                     else validate.nonnegative_float("--volume-weight", o.volume_weight))
    check_budget(cfg.epochs, cycle)  # at the door, before the data is loaded
    data_dir = validate.data_dir(o.data_dir)
    folder = RunFolder(o.out, None)  # a folder in use is refused as that
    dev = folder.join(o.device)
    data = load_dataset(o.dataset, data_dir, task).subset(train=train_samples).to(dev)
    settings = {"dataset": o.dataset, **task_field(task), "model": spec.to_dict(data), "B": cfg.epochs, "cycle": cycle,
                "lr1": lr1,
                "lr2": lr2, "train": cfg.to_dict(), "train_samples": data.train_size}
    if o.method == "espro":  # older comparisons (FGE only) keep their settings, so they still continue
        settings.update(method=o.method, volume_weight=volume_weight)
    comparison_so_far(folder.out, settings)  # at the door, and again under the lock
    with folder.claim(check=lambda out: comparison_so_far(out, settings)) as out:
        state = compare_budgets(lambda: spec.build(data).to(dev), data, cfg, cycle, lr1, lr2, seeds,
                                espro=o.method == "espro", volume_weight=volume_weight, settings=settings, store=out,
                                progress=o.progress, speed=o.speed)
        assert state.table is not None, "compare_budgets fills the table once every seed is done"
        title = (f"{o.dataset}, {spec.name}, B = {cfg.epochs} epochs, cycle {cycle}, lr1 {lr1}, lr2 {lr2}, "
                 f"{len(seeds)} seeds")
        atomic_write(out / "budget.md", budget_markdown(state.table, title).encode())
    return state

