"""`modeconn connect`: fit a low-loss curve between two trained networks into a run folder."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..core.curve import Curve
from ..core.families import FAMILIES, check_family
from ..evaluation.evaluate import metrics_with_bn
from ..recipes import recipe_for
from ..runtime import distributed
from ..runtime.provenance import made_with
from ..storage.files import save_tensors
from ..storage.runfolder import CHECKPOINT, RunInfo, describe_endpoints, load_endpoints, write_run
from ..tasks import headline, metric_label
from ..training.train import train_curve
from . import validate
from .common import RunFolder, fallback_model, task_field, training_config
from .options import REQUIRED, TrainingOptions, option
from .registry import command


@dataclass
class ConnectOptions(TrainingOptions):
    start: str = option(REQUIRED, "run folder or weights file (.safetensors or .pt)")
    end: str = option(REQUIRED, "run folder or weights file (.safetensors or .pt)")
    out: str = option(REQUIRED, "the curve run folder to write")
    curve: str = option("bezier", "the curve family", choices=tuple(FAMILIES))
    bends: int = option(1, "free control points between the endpoints (0: the line)")
    free_endpoints: bool = option(False, "train the endpoints too")
    dataset: str | None = option(None, "override the endpoints' dataset")
    model: str | None = option(None, "override the endpoints' model")


def _summary(run: RunInfo, o: ConnectOptions) -> str:
    lead = headline(k.removeprefix("midpoint_") for k in run.raw if k.startswith("midpoint_"))
    return (f"{o.out}: curve midpoint {metric_label(lead)} {run.raw['midpoint_' + lead]:.4f}, "
            f"length {run.raw['length']:.3f} ({run.raw['seconds']:.1f} s)")


@command("connect", ConnectOptions, help="fit a low-loss curve between two trained networks", summary=_summary)
def connect(o: ConnectOptions) -> RunInfo:
    """Fit a curve between two trained networks into OUT: curve.safetensors and run.json (its record is returned)."""
    bends = validate.nonnegative_int("--bends", o.bends)
    check_family(o.curve, bends + 2)
    if o.dataset is not None:
        recipe_for(o.dataset)
    sources = describe_endpoints([o.start, o.end], o.dataset, validate.model_name(o.model),
                                 fallback_model(o.dataset))
    cfg = training_config(recipe_for(sources[0].dataset).connect, o.epochs, o.lr, o.wd, o.batch_size, o.seed,
                          o.optimizer, o.schedule)
    data_dir = validate.data_dir(o.data_dir)
    settings = {"start": str(Path(o.start).resolve()), "end": str(Path(o.end).resolve()),
                "dataset": sources[0].dataset, **task_field(sources[0].task), "model": sources[0].model.name,
                "curve": {"kind": o.curve, "bends": bends, "free_endpoints": o.free_endpoints}, "config": cfg.to_dict()}
    folder = RunFolder(o.out, "run.json", resume=o.resume, settings=settings)
    dev = folder.join(o.device)
    ends = load_endpoints(sources, data_dir, dev)
    start_net, end_net = ends.nets  # START and END
    path = Curve(start_net, end_net, kind=o.curve, bends=bends, free_endpoints=o.free_endpoints).to(dev)
    with folder.claim() as out:
        began = time.time()
        history, _ = train_curve(path, ends.data, cfg, checkpoint=out / CHECKPOINT, resume=o.resume,
                                 settings=settings, progress=o.progress, desc=f"connect {out.name}", speed=o.speed)
        info = {"kind": "curve", "dataset": ends.dataset, **task_field(sources[0].task), "data_dir": ends.data_dir,
                "model": ends.model.to_dict(ends.data), "curve": settings["curve"], "start": str(o.start),
                "end": str(o.end), "config": cfg.to_dict(), "seed": cfg.seed, "speed": o.speed.to_dict(),
                "processes": distributed.world_size(), "made_with": made_with(ends.data.device),
                "epoch_train_loss": history, "seconds": round(time.time() - began, 2), "length": path.length(),
                **{f"midpoint_{k}": v
                   for k, v in metrics_with_bn(path.model_at(0.5), ends.data, speed=o.speed).to_dict().items()}}
        save_tensors(out / "curve.safetensors", path.state_dict(),
                     metadata={"kind": o.curve, "bends": str(bends), "names": ",".join(path.param_space.names)})
        run = write_run(out, info)
    return run
