"""`modeconn simplex`: SPRO (Benton et al. 2021), a low-loss simplex grown around a trained network.

Vertices are added one at a time at the centroid of the ones before and trained with those fixed,
one uniformly drawn point of the simplex per minibatch, weight decay at that point, and the
volume term. Each finished stage is kept (OUT/stageK.safetensors), so a killed run resumes at the
stage it was in, from that stage's last checkpoint.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

from ..core.simplex import Simplex
from ..errors import ModeconnError
from ..evaluation.evaluate import metrics_with_bn
from ..recipes import recipe_for
from ..runtime.provenance import made_with
from ..storage.checkpoint import check_settings, load_checkpoint
from ..storage.files import load_metadata, load_state_into, load_tensors, remove_file, save_tensors
from ..storage.runfolder import (
    CHECKPOINT,
    RunInfo,
    describe_endpoints,
    load_curve,
    load_endpoints,
    read_curve_run,
    read_run,
    write_run,
)
from ..tasks import headline, metric_label
from ..training.spro import (
    EPOCHS_PER_VERTEX,
    SPRO_LR,
    check_extendable,
    curve_complex,
    first_stage,
    grow_simplex,
    train_vertex,
)
from ..training.train import SPRO_VOLUME_WEIGHT
from . import validate
from .common import RunFolder, fallback_model, task_field, training_config
from .options import REQUIRED, TrainingOptions, option
from .registry import command

MAX_VERTICES = 8  # free vertices grown around one network; each costs a full stage of training


@dataclass
class SimplexOptions(TrainingOptions):
    start: list[str] = option(REQUIRED, "a trained network (run folder or weights file); several: a complex "
                                        "connecting them through shared vertices; or a one-bend polychain curve "
                                        "run, to extend", nargs="+")
    out: str = option(REQUIRED, "the simplex run folder to write")
    vertices: int = option(2, "free vertices to grow, one at a time, each trained --epochs (default 10) with a "
                              "cosine schedule from --lr (default 0.01)")
    volume_weight: float | None = option(None, "weight of -log(volume + 1e-4) in the loss (default: Benton et "
                                               "al.'s, 1e-8)")
    dataset: str | None = option(None, "override the network's dataset")
    model: str | None = option(None, "override the network's model")


def _cli_summary(result: RunInfo, o: SimplexOptions) -> str:
    lead = headline(result.raw["metrics"]["vertex0"])  # test_err, or test_loss for a task without an error
    word = metric_label(lead)
    centre = (f"centroid {word} {result.raw[f'centroid_{lead}']:.4f}" if f"centroid_{lead}" in result.raw else
              f"face centres' {word}s " + ", ".join(f"{e:.4f}" for e in result.raw[f"face_centres_{lead}"]))
    return (f"{o.out}: {result.raw['vertices']} vertices, volume {result.raw['volume']:.4g}; {centre} "
            f"(BN recomputed), vertices "
            + ", ".join(f"{result.raw['metrics'][f'vertex{k}'][lead]:.4f}" for k in range(result.raw['vertices']))
            + f" ({result.raw['seconds']:.1f} s)")


@command("simplex", SimplexOptions, help="grow a low-loss simplex around a trained network (SPRO, Benton et "
                                          "al. 2021)", summary=_cli_summary)
def simplex(o: SimplexOptions) -> RunInfo:
    """Grow `vertices` free vertices around START into OUT: simplex.safetensors and run.json.

    START is one network (SPRO), several (a mode-connecting complex: each network with the vertices
    they share) or a one-bend polychain curve run (its two segments extended by shared vertices).
    """
    start, out, vertices, volume_weight, dataset = o.start, o.out, o.vertices, o.volume_weight, o.dataset
    model, epochs, lr, wd, batch_size, seed = o.model, o.epochs, o.lr, o.wd, o.batch_size, o.seed
    data_dir, device, resume, progress, speed = o.data_dir, o.device, o.resume, o.progress, o.speed
    starts = [start] if isinstance(start, (str, Path)) else list(start)
    vertices = validate.positive_int("--vertices", vertices)
    if vertices > MAX_VERTICES:
        raise ModeconnError(f"--vertices {vertices} is too many: at most {MAX_VERTICES} (each vertex is a full "
                            "stage of training)")
    if len(starts) > MAX_VERTICES:
        raise ModeconnError(f"--start names {len(starts)} networks: at most {MAX_VERTICES}")
    if len({str(Path(s).resolve()) for s in starts}) != len(starts):
        raise ModeconnError("--start names the same network twice: pass distinct networks")
    volume_weight = (SPRO_VOLUME_WEIGHT if volume_weight is None
                     else validate.nonnegative_float("--volume-weight", volume_weight))
    curve_run = _curve_start(starts)
    if curve_run is not None:
        if dataset is not None or model is not None:
            raise ModeconnError("--dataset and --model describe networks given as weights files; a curve run "
                                "records its own: leave them out")
        dataset_name, model_name, task = curve_run.dataset, curve_run.model.name, curve_run.task
    else:
        sources = describe_endpoints(starts, dataset, validate.model_name(model), fallback_model(dataset))
        dataset_name, model_name, task = sources[0].dataset, sources[0].model.name, sources[0].task
    connect = recipe_for(dataset_name).connect
    # Vertices that connect networks are bends of a curve at first: they train like one (the recipe's
    # connect schedule). Vertices grown around one network or a curve start near low loss: Benton's.
    base = connect if len(starts) > 1 else replace(connect, epochs=EPOCHS_PER_VERTEX, lr=SPRO_LR)
    if o.schedule is not None and len(starts) == 1:
        raise ModeconnError("--schedule: vertices grown around one network train with Benton et al.'s cosine "
                            "schedule; leave --schedule out (--optimizer applies)")
    cfg = training_config(base, epochs, lr, wd, batch_size, seed, o.optimizer, o.schedule)
    data_dir = validate.data_dir(data_dir)
    settings = {"start": [str(Path(s).resolve()) for s in starts] if len(starts) > 1
                         else str(Path(starts[0]).resolve()),
                "dataset": dataset_name, **task_field(task), "model": model_name, "vertices": vertices,
                "volume_weight": volume_weight,
                "config": cfg.to_dict()}
    folder = RunFolder(out, "run.json", resume=resume, settings=settings)
    _check_stages(folder.out, resume, settings)
    dev = folder.join(device)
    if curve_run is not None:
        curve, _, data = load_curve(starts[0], dev, data_dir)
        first, model_spec = curve_complex(curve).grown(), curve_run.model
        data_dir = data_dir or curve_run.data_dir
    else:
        ends = load_endpoints(sources, data_dir, dev)
        first, model_spec, data, data_dir = first_stage(ends.nets), ends.model, ends.data, ends.data_dir
    with folder.claim(check=lambda out: _check_stages(out, resume, settings)) as out_dir:
        began = time.time()
        histories = []
        shape = grow_simplex(first, data, cfg, vertices, stage=lambda s, k: histories.append(
            _stage(s, k, first.num_points - 1, out_dir, data, cfg, volume_weight, settings, resume, progress, speed)))
        info = _summary(shape, model_spec, data, data_dir, settings, cfg, histories, time.time() - began, speed)
        save_tensors(out_dir / "simplex.safetensors", shape.state_dict(),
                     metadata={"vertices": str(shape.num_points), "names": ",".join(shape.param_space.names)})
        run = write_run(out_dir, info)
        for k in range(1, vertices + 1):
            remove_file(out_dir / f"stage{k}.safetensors")
    return run


def _check_stages(out: Path, resume: bool, settings: dict) -> None:
    """Finished stages of an unfinished simplex continue only with --resume and the settings they were made with."""
    for kept in sorted(out.glob("stage*.safetensors")):
        if not resume:
            raise ModeconnError(f"{out} holds an unfinished simplex ({kept.name}): pass --resume to continue it, or "
                                "choose another --out")
        check_settings(kept, settings)


def _curve_start(starts) -> RunInfo | None:
    """The curve run a single --start names, or None where the starts are networks."""
    if len(starts) != 1 or not (Path(starts[0]) / "run.json").is_file():
        return None
    info = read_run(starts[0])
    if info.kind != "curve":
        return None
    read_curve_run(starts[0])  # refuses an unfinished curve run
    assert info.curve is not None, "read_run gives every curve run its CurveSpec"
    check_extendable(info.curve.kind, info.curve.bends)
    return info


def _stage(shape: Simplex, k: int, base: int, out: Path, data, cfg, volume_weight, settings, resume, progress,
           speed) -> list:
    """Train vertex k with the others fixed (`base` + k - 1 of them), or load it where an earlier run
    finished this stage."""
    kept = out / f"stage{k}.safetensors"
    if kept.exists():
        load_state_into(shape, load_tensors(kept), str(kept))
        return json.loads(load_metadata(kept)["history"])
    checkpoint = out / CHECKPOINT
    if checkpoint.exists() and load_checkpoint(checkpoint, settings).module["fixed_points"].shape[0] != base + k - 1:
        remove_file(checkpoint)  # the last epoch of the stage before, killed before it was removed
    history, _ = train_vertex(shape, data, cfg, volume_weight, checkpoint=checkpoint, resume=resume, settings=settings,
                              progress=progress, desc=f"vertex {k}/{settings['vertices']}", speed=speed)
    save_tensors(kept, shape.state_dict(), metadata={"history": json.dumps(history), "settings": json.dumps(settings)})
    remove_file(out / CHECKPOINT)
    return history


def _summary(shape: Simplex, model, data, data_dir, settings, cfg, histories, seconds: float, speed) -> dict:
    """run.json: the geometry (volume, distances, faces) and the metrics at the vertices and the centroid
    (a complex: each face's centre, `face{i}_centre`), BN recomputed."""
    points = {f"vertex{k}": [float(i == k) for i in range(shape.num_points)] for k in range(shape.num_points)}
    centres = {f"face{i}_centre": c for i, c in enumerate(shape.face_centres())} if shape.is_complex else \
        {"centroid": shape.centroid()}
    metrics = {}
    for name, weights in {**points, **centres}.items():
        metrics[name] = metrics_with_bn(shape.model_at(weights), data, speed=speed).to_dict()
    lead = headline(metrics["vertex0"])  # test_err, or test_loss for a task without an error
    summary = {f"centroid_{k}": v for k, v in metrics["centroid"].items()} if "centroid" in metrics else \
        {f"face_centres_{lead}": [metrics[name][lead] for name in centres]}
    return {"kind": "simplex", "dataset": settings["dataset"], **task_field(settings.get("task")), "data_dir": data_dir,
            "model": model.to_dict(data),
            "start": settings["start"], "vertices": shape.num_points, "free_vertices": settings["vertices"],
            "faces": shape.faces, "volume_weight": settings["volume_weight"], "config": cfg.to_dict(), "seed": cfg.seed,
            "speed": speed.to_dict(), "made_with": made_with(data.device), "stage_train_loss": histories,
            "seconds": round(seconds, 2), "volume": float(shape.volume().detach()),
            "distances": shape.distances().tolist(), "metrics": metrics,
            **summary}
