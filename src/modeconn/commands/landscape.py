"""`modeconn landscape`: loss and error over a 1-D or 2-D slice around a network or a curve's point."""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.directions import pca_directions
from ..core.flat import check_same_architecture, parameters_vector
from ..data import DataSource
from ..errors import ModeconnError
from ..evaluation.landscape import LandscapeResult, measure_slice, slice_directions
from ..reporting.plots import plot_landscape
from ..storage.files import save_tensors
from ..storage.runfolder import (
    describe_endpoints,
    describe_network,
    load_curve,
    load_endpoints,
    load_network,
    read_curve_run,
    trajectory_states,
)
from . import validate
from .common import RunFolder, eval_settings, other_dataset
from .options import OTHER_DATASET_HELP, REQUIRED, EvalOptions, option
from .registry import command

DIRECTIONS = ("random", "pca")


@dataclass
class Centre:
    """The network a command measures around: a trained network, or a curve's point phi(t)."""

    model: nn.Module
    data: DataSource
    wd: float
    source: dict


def check_centre(run, curve, t) -> float | None:
    """Refuse a centre given twice, not at all, or a t off [0, 1] or without a curve (before any loading)."""
    if (run is None) == (curve is None):
        raise ModeconnError("give either a network run (RUN) or --curve RUN --t T")
    if t is not None and curve is None:
        raise ModeconnError("--t chooses a point of a curve: use it with --curve")
    if curve is not None:
        t = 0.5 if t is None else validate.nonnegative_float("--t", t)
        if t > 1:
            raise ModeconnError(f"--t must be between 0 and 1, got {t:g}")
        read_curve_run(curve)
    else:
        describe_endpoints([run])
    return t


def load_centre(run, curve, t, data_dir, device, dataset: str | None = None) -> Centre:
    """Load the checked centre on `device`, with its dataset (or `dataset` in its place) and the weight decay it was
    trained with."""
    if curve is not None:
        path, info, data = load_curve(curve, device, data_dir, dataset)
        return Centre(path.model_at(t), data, info.wd, {"curve": str(curve), "t": t})
    ends = load_endpoints(describe_endpoints([run], dataset), data_dir, device)
    return Centre(ends.nets[0], ends.data, ends.sources[0].wd, {"network": str(run)})


@dataclass
class LandscapeOptions(EvalOptions):
    out: str = option(REQUIRED, "the folder to write landscape.npz, .json, .png and directions.safetensors in")
    run: str | None = option(None, "the network at the centre (or --curve RUN --t T)", positional=True, nargs="?")
    curve: str | None = option(None, "a curve run: the centre is its point at --t")
    t: float | None = option(None, "the curve's point at the centre (default 0.5)")
    dims: int = option(2, "1 (a line) or 2 (a plane)")
    grid: int = option(21, "grid points per direction")
    span: float = option(1.0, "half-width of the grid: in direction units (random), or times the trajectory's "
                              "extent (pca)")
    directions: str = option("random", "filter-normalised random directions, or the principal directions of "
                                       "--trajectory", choices=DIRECTIONS)
    trajectory: str | None = option(None, "a network run trained with --keep-every K (for pca)")
    seed: int = option(0, "seed of the random directions")
    bn_directions: bool = option(False, "move biases and BatchNorm parameters too (default: they stay, as in "
                                        "Li et al.)")
    chunk: int | None = option(None, "grid points evaluated at once with torch.func.vmap")
    dataset: str | None = option(None, OTHER_DATASET_HELP)


def _summary(result: LandscapeResult, o: LandscapeOptions) -> str:
    return f"{result.describe()}\nwrote {o.out}/landscape.npz, landscape.json, landscape.png"


@command("landscape", LandscapeOptions,
         help="loss and error over a 1-D or 2-D slice around a network (Li et al. 2018)", summary=_summary)
def landscape(o: LandscapeOptions) -> LandscapeResult:
    """Metrics over a G (1-D) or G x G (2-D) grid around a network along filter-normalised random directions
    (Li et al. 2018) or a trajectory's principal directions: landscape.npz/.json/.png, directions.safetensors.

    `span` is the grid's half-width: in direction units for random directions, as a multiple of the
    trajectory's largest projection for PCA. A killed slice restarted with the same command
    computes only the missing points.
    """
    out, run, curve, t, dims, grid, span = o.out, o.run, o.curve, o.t, o.dims, o.grid, o.span
    directions, trajectory, seed, bn_directions = o.directions, o.trajectory, o.seed, o.bn_directions
    bn_samples, train_samples, batch_size, chunk = o.bn_samples, o.train_samples, o.batch_size, o.chunk
    data_dir, device, force, progress, speed = o.data_dir, o.device, o.force, o.progress, o.speed
    t = check_centre(run, curve, t)
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ModeconnError(f"--dims must be 1 or 2, got {dims}")
    grid = validate.positive_int("--grid", grid)
    if grid < 2:
        raise ModeconnError(f"--grid must be >= 2 points per side, got {grid}")
    span = validate.positive_float("--span", span)
    seed = validate.nonnegative_int("--seed", seed)
    if directions not in DIRECTIONS:
        raise ModeconnError(f"unknown --directions {directions!r}: choose one of {', '.join(DIRECTIONS)}")
    if (directions == "pca") != (trajectory is not None):
        raise ModeconnError("--directions pca takes its directions from --trajectory RUN, and --trajectory needs "
                            "--directions pca")
    if bn_directions and directions == "pca":
        raise ModeconnError("--bn-directions applies to random directions; PCA directions cover every parameter")
    states = trajectory_states(trajectory) if trajectory is not None else []
    if trajectory is not None and len(states) < 3:
        raise ModeconnError(f"{trajectory} holds {len(states)} state(s): PCA needs at least 3; train with "
                            "--keep-every K")
    chunk = validate.optional(validate.positive_int, "--chunk", chunk) or 1
    data_dir = validate.data_dir(data_dir)
    folder = RunFolder(out, "landscape.json", force=force)
    dev = folder.join(device)
    centre = load_centre(run, curve, t, data_dir, dev, o.dataset)
    settings = eval_settings(centre.wd, batch_size, bn_samples, train_samples)
    weights = parameters_vector(centre.model)
    extra: dict = {}
    explained: list = []
    if directions == "random":
        dirs = slice_directions(centre.model, dims, seed, bn_directions)
        half = [span] * dims
    else:
        stack = []
        for _, state_dir in states:
            net = load_network(describe_network(state_dir), centre.data, dev)
            check_same_architecture(centre.model.state_dict(), net.state_dict(), what=("the centre", str(state_dir)))
            stack.append(parameters_vector(net))
        dirs, xy, explained = pca_directions(torch.stack(stack), weights, dims)
        half = [span * float(xy[:, k].abs().max()) for k in range(dims)]
        extra = {"trajectory_xy": xy.cpu().numpy(), "trajectory_epochs": np.array([e for e, _ in states])}
    fingerprint = json.dumps({"centre": centre.source, "dims": dims, "grid": grid, "span": span,
                              "directions": directions, "trajectory": str(trajectory) if trajectory else None,
                              "seed": seed, "bn_directions": bn_directions, "bn_samples": settings.bn_samples,
                              "train_samples": settings.train_samples,
                              "norms": [round(float(d.double().norm()), 6) for d in dirs],
                              **other_dataset(o.dataset)}, sort_keys=True)
    with folder.claim() as out_dir:  # measure_slice refuses a partial slice of other settings before it writes
        record = {"centre": centre.source, "dims": dims, "directions": directions,
                  **other_dataset(o.dataset),
                  **({"trajectory": str(trajectory), "explained_variance": explained} if trajectory else {})}
        result = measure_slice(centre.model, centre.data, dirs, half, grid, settings, chunk=chunk, store=out_dir,
                               fingerprint=fingerprint, force=force, progress=progress, speed=speed, record=record,
                               record_settings={"span": span, "seed": seed, "bn_directions": bn_directions},
                               trajectory=extra)
        # a killed slice redraws the same directions from the seed, so they are written with the result
        save_tensors(out_dir / "directions.safetensors", {"centre": weights.cpu(), "directions": dirs.cpu()})
        plot_landscape(result, out_dir / "landscape.png")
        result.write(out_dir)
    return result
