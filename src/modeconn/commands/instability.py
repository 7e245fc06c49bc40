"""`modeconn instability`: from which epoch do two copies trained on different data orders stay linearly
connected? (Frankle et al. 2020, "Linear Mode Connectivity and the Lottery Ticket Hypothesis".)

One parent network trains up to the last spawn epoch, keeping its state (weights and momentum) at
each spawn epoch k: the shared prefix is trained once. From each kept state two copies train for
the remaining epochs of the same schedule, each with its own data order and dropout seed; the
line between them is measured like `eval-line`. Under torchrun the parent trains data-parallel, the
copies are dealt to the ranks and train side by side, and the lines are measured sharded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data import load_dataset
from ..evaluation.along import LineEval
from ..recipes import recipe_for
from ..reporting.plots import plot_along, plot_instability
from ..storage.runfolder import ModelSpec
from ..training.instability import InstabilityResult, check_spawn, instability_analysis
from . import validate
from .common import RunFolder, eval_settings, network_info, path_points, save_network_run, task_field, training_config
from .options import REQUIRED, TASK_HELP, TrainingOptions, option
from .registry import command


@dataclass
class InstabilityOptions(TrainingOptions):
    out: str = option(REQUIRED, "the folder to write instability.json, .png and the copies in")
    dataset: str = option("mnist1d", "the dataset (or your own as package.module:callable)")
    task: str | None = option(None, TASK_HELP)
    spawn: list[int] = option([0, 1, 2, 5, 10, 20], "epochs at which two copies are spawned from the parent",
                              nargs="+")
    model: str | None = option(None, "registry name or your builder's package.module:callable (default: the "
                                     "dataset's default model)")
    points: int = option(11, "points along each line between two copies")
    same_order: bool = option(False, "both copies see one data order (a check: no barrier)")
    bn_samples: int | None = option(None, "recompute BatchNorm on this many training examples")
    train_samples: int | None = option(None, "train metrics on a random subset")


def _summary(result: InstabilityResult, o: InstabilityOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/instability.json and instability.png"


@command("instability", InstabilityOptions, help="from which epoch two copies on different data orders stay "
                                                  "linearly connected (Frankle et al. 2020)", summary=_summary)
def instability(o: InstabilityOptions) -> InstabilityResult:
    """Barriers between two copies spawned at each epoch in `spawn`: OUT/instability.json and .png.

    `same_order` trains both copies with one data order (a check: they must come out identical).
    A killed run continues with --resume and the same settings.
    """
    recipe = recipe_for(o.dataset)
    spec = ModelSpec(validate.model_name(o.model) or recipe.model, {})
    task = validate.task(o.task)
    cfg = training_config(recipe.train, o.epochs, o.lr, o.wd, o.batch_size, o.seed, o.optimizer, o.schedule)
    ks = check_spawn([validate.nonnegative_int("--spawn", k) for k in o.spawn], cfg.epochs,
                     path_points(o.points))
    settings_eval = eval_settings(cfg.wd, 1000, o.bn_samples, o.train_samples)
    data_dir = validate.data_dir(o.data_dir)
    settings = {"dataset": o.dataset, **task_field(task), "model": spec.name, "config": cfg.to_dict(), "spawn": ks,
                "points": o.points,
                "same_order": o.same_order, "bn_samples": settings_eval.bn_samples,
                "train_samples": settings_eval.train_samples}
    folder = RunFolder(o.out, "instability.json", resume=o.resume, settings=settings)
    dev = folder.join(o.device)
    data = load_dataset(o.dataset, data_dir, task).to(dev)

    def save_copy(copy: Path, net, optimizer, copy_cfg, k: int) -> None:  # each copy is a network run
        save_network_run(copy, net, optimizer, {**network_info(o.dataset, data_dir, spec, data, copy_cfg, o.speed,
                                                                     task),
                                                "epochs_trained": cfg.epochs, "spawned_at": k}, data, o.speed)

    with folder.claim() as out:
        result = instability_analysis(lambda: spec.build(data).to(dev), data, cfg, ks, o.points, settings_eval,
                                      same_order=o.same_order, store=out,
                                      resume_settings={"dataset": o.dataset, **task_field(task),
                                                       "model": spec.name},
                                      save_copy=save_copy, progress=o.progress, speed=o.speed)
        result.dataset, result.model = o.dataset, spec.name
        for k in ks:  # each line's figure beside its record
            line = out / f"k{k}" / LineEval.file
            if not line.with_suffix(".png").exists():
                plot_along(LineEval.read(line), line.with_suffix(".png"), f"copies spawned at epoch {k}")
        plot_instability(result.to_json(), out / "instability.png")
        result.write(out)
    return result
