"""`modeconn align` (network b relabelled into a's units, an ordinary network run) and `modeconn connectivity`."""
from __future__ import annotations

from pathlib import Path

from ..alignment.connectivity import PathsResult, compare_paths
from ..alignment.matching import METHODS, AlignInfo
from ..alignment.matching import align as align_networks
from ..core.families import FAMILIES
from ..errors import ModeconnError
from ..evaluation.evaluate import split_metrics
from ..recipes import recipe_for
from ..reporting.plots import plot_along
from ..runtime.speed import EAGER, Speed
from ..storage.files import save_tensors, write_json
from ..storage.runfolder import check_unfinished, claim_output, describe_endpoints, load_endpoints
from . import validate
from .common import eval_settings, join, training_config


def align(start, end, out, method: str = "weights", seed: int = 0, train_samples: int | None = None,
          data_dir: str | None = None, device: str = "auto", progress: bool = True,
          speed: Speed = EAGER) -> AlignInfo:
    """Permute END's hidden units to match START's: OUT holds model.safetensors, permutation.safetensors, run.json.

    The result computes exactly what END computes and is a network run like any other, so
    eval-line, connect and plane take it. `train_samples` limits the training examples that
    activation matching measures (default: all).
    """
    if method not in METHODS:
        raise ModeconnError(f"unknown --method {method!r}: choose one of {', '.join(METHODS)}")
    seed = validate.nonnegative_int("--seed", seed)
    train_samples = validate.optional(validate.positive_int, "--train-samples", train_samples)
    sources = describe_endpoints([start, end])
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    check_unfinished(out, "run.json", resume=False)
    dev = join(device)
    ends = load_endpoints(sources, data_dir, dev)
    data = ends.data
    batches = data.train_batches(500, shuffle=False, seed=seed, limit=train_samples)
    with claim_output(out, "run.json"):
        aligned, info = align_networks(*ends.nets, method=method, batches=batches, example_input=data.train_x[:2],
                                       seed=seed)
        kept = {k: v for k, v in sources[1].info.raw.items() if k not in ("epochs_trained", "full_run")}
        run = {**kept, "aligned_to": str(start), "aligned_from": str(end), "align": info.to_dict(),
               **split_metrics(aligned, data, speed=speed).to_dict()}
        save_tensors(out / "model.safetensors", aligned.state_dict())
        save_tensors(out / "permutation.safetensors", info.permutation)
        write_json(Path(out) / "run.json", run)
    return info


def connectivity(start, end, out, points: int = 61, curve: str | None = None, epochs: int | None = None,
                 lr: float | None = None, bn_samples: int | None = None, train_samples: int | None = None,
                 batch_size: int = 1000, data_dir: str | None = None, device: str = "auto", force: bool = False,
                 progress: bool = True, speed: Speed = EAGER) -> PathsResult:
    """The plain line, the lines to END aligned by weights and by activations, REPAIR, and optionally curves:
    OUT/paths.json and paths.png."""
    points = validate.positive_int("--points", points)
    if points < 2:
        raise ModeconnError(f"--points must be >= 2 (t = 0 and t = 1 at least), got {points}")
    if curve is not None and curve not in FAMILIES:
        raise ModeconnError(f"unknown --curve {curve!r}: choose one of {', '.join(FAMILIES)}")
    if curve is None and (epochs is not None or lr is not None):
        raise ModeconnError("--epochs and --lr set the training of the curves that --curve adds: without --curve "
                            "nothing is trained; add --curve bezier or leave them out")
    sources = describe_endpoints([start, end])
    settings = eval_settings(sources[0].wd, batch_size, bn_samples, train_samples)
    cfg = training_config(recipe_for(sources[0].dataset).connect, epochs, lr) if curve else None
    data_dir = validate.data_dir(data_dir)
    out = validate.output_folder("--out", out)
    check_unfinished(out, "paths.json", force=force)
    dev = join(device)
    ends = load_endpoints(sources, data_dir, dev)
    with claim_output(out, "paths.json", force=force):
        result = compare_paths(*ends.nets, ends.data, settings, points, curve, cfg, progress, speed)
        result.start, result.end = str(start), str(end)
        plot_along(result, out / "paths.png", f"plain and aligned paths, {ends.dataset}")
        write_json(out / "paths.json", result.to_json())
    return result
