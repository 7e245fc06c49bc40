"""Metrics of one weight vector: BatchNorm recomputed for it, then the task's train and test metrics."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm.auto import tqdm

from ..core.flat import load_parameters_vector, parameter_space
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..runtime import distributed
from ..runtime.speed import EAGER, Speed
from ..storage.partial import PartialStore
from ..tasks import CLASSIFICATION
from .batchnorm import recompute_bn, recompute_bn_vmapped
from .evaluate import Metrics, SplitMetrics, evaluate

METRICS = CLASSIFICATION.point_metrics  # the columns of a classification point (a data's task names its own)
# Points each rank evaluates between saves of the store: amortizes the save and the gather across
# ranks (per-point rounds cost 25% on MNIST-1D under torchrun); a killed run redoes at most one round.
ROUND_POINTS = 8


def metric_names(keys) -> tuple[str, ...]:
    """The metric columns among a result file's keys (train_<metric>, test_<metric>, train_objective), in order."""
    return tuple(k for k in keys if k.startswith(("train_", "test_")))


def task_settings(task) -> dict:
    """What a result's settings say of its task: nothing for classification (its files are as they always were),
    {"task": name} otherwise."""
    return {} if task.name == CLASSIFICATION.name else {"task": task.name}


def check_metric_arrays(metrics: dict[str, np.ndarray], shape: tuple[int, ...], source, rerun: str) -> None:
    """Refuse, in one line naming `source`, metric arrays read from a file that no measurement could have written:
    one of another shape than the grid's, a NaN, or an error outside [0, 1]. `metrics` are the file's own."""
    for name, values in metrics.items():
        off_range = name.endswith("_err") and not ((values >= 0) & (values <= 1)).all()
        problem = (f"has shape {values.shape}, not the grid's {shape}" if values.shape != shape
                   else "holds NaN" if np.isnan(values).any()
                   else "holds errors outside [0, 1]" if off_range else None)
        if problem:
            raise ModeconnError(f"{source}: {name} {problem}; the file is damaged: rerun `modeconn {rerun}`")


def measure_shared(n: int, measure, device, metrics: tuple[str, ...] = METRICS) -> np.ndarray:
    """Metrics of items 0..n-1 as an (n, len(metrics)) array, columns named by `metrics` (a task's
    `point_metrics`); under torchrun each rank measures whole items.

    `measure(indices)` returns one SplitMetrics per index; every rank gets the whole table.
    """
    rows = distributed.gather_rows(n, len(metrics), lambda local: ([r.to_dict()[m] for m in metrics]
                                                                    for r in measure(local)), device)
    return rows.cpu().numpy()


@dataclass
class EvalSettings:
    """How a point is measured: batch size, BN subset, train subset, and the weight decay trained with."""

    wd: float = 0.0
    batch_size: int = 1000
    bn_samples: int | None = None     # None: the exact full pass over the training data
    train_samples: int | None = None  # None: train metrics on the whole training split
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.wd, bool) or not isinstance(self.wd, (int, float)) or not 0 <= self.wd < math.inf:
            raise ModeconnError(f"{param('wd')} must be a finite number >= 0, got {self.wd!r}")
        for name in ("batch_size", "bn_samples", "train_samples"):
            value = getattr(self, name)
            if value is None and name != "batch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModeconnError(f"{param(name)} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ModeconnError(f"{param('seed')} must be an integer, got {self.seed!r}")

    def bn_batches(self, data: DataSource):
        return data.bn_batches(self.batch_size, seed=self.seed, limit=self.bn_samples)

    def train_batches(self, data: DataSource):
        return data.train_batches(self.batch_size, shuffle=False, seed=self.seed + 1, limit=self.train_samples)


class PointEvaluator:
    """Measures weight vectors with one working network (reused: nothing rebuilt per point), by the data's task;
    `metrics` names the columns of each point (`data.task.point_metrics`).

    `many` measures a stack of points `chunk` at a time with `torch.func.vmap` (BN statistics
    batched too), which pays for small networks where one point cannot fill the machine.
    """

    def __init__(self, template: nn.Module, data: DataSource, settings: EvalSettings, chunk: int = 1,
                 speed: Speed = EAGER):
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ModeconnError(f"{param('chunk')} must be a positive integer (points measured at once), got {chunk!r}")
        self.net, self.data, self.settings, self.chunk = speed.module(template), data, settings, chunk
        self.speed = speed
        self.space = parameter_space(template)
        self.task = data.task
        self.metrics = data.task.point_metrics
        self.bn_batches = settings.bn_batches(data)
        self.train_batches = settings.train_batches(data)
        self.test_batches = data.test_batches(settings.batch_size)
        self.bn_passes = 0

    @torch.no_grad()
    def __call__(self, weights: torch.Tensor, buffers: dict[str, torch.Tensor] | None = None) -> SplitMetrics:
        """Metrics of the network with flat parameters `weights` (buffers optional: BN is recomputed)."""
        load_parameters_vector(self.net, weights)
        if buffers:
            for name, buf in self.net.named_buffers():
                if name in buffers:
                    buf.copy_(buffers[name])
        if recompute_bn(self.net, self.bn_batches, self.speed, self.task):
            self.bn_passes += 1
        tr = evaluate(self.net, self.train_batches, self.speed, self.task)
        te = evaluate(self.net, self.test_batches, self.speed, self.task)
        return SplitMetrics(tr, te, train_objective=tr.loss + float(self._l2(weights[None])[0]))

    def _l2(self, block: torch.Tensor) -> torch.Tensor:
        """The decay term training minimised, 0.5 * wd * ||w||^2, for each row of `block`."""
        return 0.5 * self.settings.wd * block.double().pow(2).sum(1).cpu()

    def many(self, weights: torch.Tensor) -> list[SplitMetrics]:
        """Metrics of each row of `weights` (n, P), `chunk` rows at a time."""
        out = []
        for start in range(0, len(weights), self.chunk):
            block = weights[start:start + self.chunk]
            out += [self(block[0])] if len(block) == 1 else self._batched(block)
        return out

    def _vmap_net(self) -> nn.Module:
        """A copy of the template to run under vmap; made once, reused for every chunk."""
        if not hasattr(self, "_vnet"):
            self._vnet = copy.deepcopy(self.net)
        return self._vnet

    @torch.no_grad()
    def _batched(self, block: torch.Tensor) -> list[SplitMetrics]:
        m = len(block)
        params = {s.name: block[:, s.offset:s.offset + s.numel].reshape(m, *s.shape) for s in self.space.slots}
        net = self._vmap_net()
        fbufs = {n: b.unsqueeze(0).repeat(m, *([1] * b.dim())) for n, b in net.named_buffers() if b.is_floating_point()}
        ibufs = {n: b for n, b in net.named_buffers() if not b.is_floating_point()}

        def run(p, fb, ib, x):
            return functional_call(net, {**p, **fb, **ib}, (x,))

        if recompute_bn_vmapped(net, params, fbufs, ibufs, self.bn_batches, self.speed, self.task):
            self.bn_passes += m
        net.eval()
        ev_run = vmap(run, in_dims=(0, 0, None, None))
        sums_of = vmap(self.task.sums, in_dims=(0, None))  # the task's per-batch sums, network by network
        results = {}
        for split, batches in (("train", self.train_batches), ("test", self.test_batches)):
            total: torch.Tensor | None = None
            count: torch.Tensor | float = 0.0
            for item in batches:  # sums stay on the device: one host sync per split
                x, y = self.task.split(item)
                with self.speed.autocast(block.device):
                    outputs = ev_run(params, fbufs, ibufs, self.speed.input(x))
                sums = sums_of(outputs, y)  # (m, metrics)
                total = sums if total is None else total + sums
                count = count + self.task.count(y)
            if total is None or not isinstance(count, torch.Tensor):
                raise ModeconnError(f"there are no {split} batches to evaluate on")
            count = count.cpu()
            results[split] = [Metrics(**self.task.reduce(row, count)) for row in total.cpu()]
        l2 = self._l2(block)
        return [SplitMetrics(tr, te, train_objective=float(tr.loss + l2[i]))
                for i, (tr, te) in enumerate(zip(results["train"], results["test"]))]


def metrics_store(folder: Path | None, name: str, fingerprint: str, n: int, force: bool = False,
                  metrics: tuple[str, ...] = METRICS) -> PartialStore:
    """The resumable store of `n` points' metrics (one column per name of `metrics`, a task's `point_metrics`) in
    FOLDER/NAME."""
    return PartialStore(folder, name, fingerprint, n, {m: () for m in metrics}, force)


def measure_points(coords: np.ndarray, points_at, evaluator: PointEvaluator, store: PartialStore,
                   progress: bool = True) -> dict[str, np.ndarray]:
    """Metrics at every row of `coords` ((n, d)), measured at the weights `points_at(coords)` ((n, P)): a plane's
    grid, a landscape slice, points drawn from a simplex, or any other family of points. {metric: (n,)}.

    Rows already in `store` (a `metrics_store`) are kept; the rest are measured in rounds of ROUND_POINTS per
    rank (whole points per rank under torchrun) and the store is saved after each, so a killed run redoes
    at most one round. Raises ModeconnError for a store that is corrupt or of other settings (see PartialStore).
    """
    done, values = store.load()
    todo = np.flatnonzero(~done)
    bar = tqdm(total=len(coords), initial=int(done.sum()), desc=store.name.split(".")[0], disable=not progress,
               dynamic_ncols=True)
    step = max(evaluator.chunk, ROUND_POINTS) * distributed.world_size()
    for start in range(0, len(todo), step):
        idx = todo[start:start + step]
        rows = measure_shared(len(idx), lambda local, idx=idx: evaluator.many(points_at(coords[idx[local]])),
                              evaluator.data.device, evaluator.metrics)
        for j, m in enumerate(evaluator.metrics):
            values[m][idx] = rows[:, j]
        done[idx] = True
        store.save(done, values)
        bar.update(len(idx))
    bar.close()
    return values
