"""Subspaces trained from scratch (Wortsman et al. 2021): a line, curve or simplex, every vertex free.

Each minibatch steps on the loss at one point drawn from the subspace (t ~ U(0, 1) on a line or
curve, Dirichlet(1) weights on a simplex) plus `spread` times the mean squared cosine similarity
of the vertices, which keeps them apart. Weight decay acts on each vertex, as in their code.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import TrainConfig
from ..core.curve import Curve
from ..core.simplex import Simplex
from ..core.span import WeightSpan
from ..data.datasets import DataSource
from ..errors import ModeconnError
from ..evaluation.batchnorm import recompute_bn
from ..evaluation.evaluate import metrics_with_bn, split_metrics
from ..runtime.speed import EAGER, Speed
from .train import Checkpointing, Hooks, fit

SPREAD = 1.0  # Wortsman et al.'s beta for lines, curves and simplexes


def matrix_ranges(span: WeightSpan) -> list[tuple[int, int]]:
    """(start, stop) of each run of weight-matrix and kernel entries in the flat weights: what the
    spread term compares. Wortsman et al. compare convolution kernels only; biases and norm scales
    (all ones at initialisation) would make every pair look alike."""
    ranges: list[tuple[int, int]]
    ranges, offset = [], 0
    for slot in span.param_space.slots:
        if len(slot.shape) >= 2:
            if ranges and ranges[-1][1] == offset:
                ranges[-1] = (ranges[-1][0], offset + slot.numel)
            else:
                ranges.append((offset, offset + slot.numel))
        offset += slot.numel
    return ranges or [(0, offset)]  # a network of vectors only: compare everything


class _RangedGram(torch.autograd.Function):
    """G = sum over the ranges of V[:, r] V[:, r]^T, with its gradient in one pass over V (the
    entries outside the ranges get zero); autograd's own over a mask or a gather made several."""

    @staticmethod
    def forward(ctx, v, ranges):
        ctx.save_for_backward(v)
        ctx.ranges = ranges
        gram = None
        for start, stop in ranges:
            piece = v[:, start:stop]
            gram = piece @ piece.T if gram is None else gram.addmm_(piece, piece.T)
        return gram

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        out = (grad + grad.T) @ v
        done = 0
        for start, stop in ctx.ranges:
            out[:, done:start] = 0
            done = stop
        out[:, done:] = 0
        return out, None


def squared_cosine(span: WeightSpan, ranges: list[tuple[int, int]]) -> torch.Tensor:
    """Mean over pairs of control points of their squared cosine similarity over the entries in `ranges`."""
    gram = _RangedGram.apply(span.control_points(), ranges)
    norms = gram.diagonal()
    cos2 = gram.square() / (norms[:, None] * norms[None, :])
    k = len(norms)
    return (cos2.sum() - cos2.diagonal().sum()) / (k * (k - 1))


def train_subspace(span: Curve | Simplex, data: DataSource, cfg: TrainConfig, spread: float = SPREAD, *,
                   checkpoint: Path | None = None, resume: bool = False, settings: dict | None = None,
                   progress: bool = True, desc: str = "subspace", speed: Speed = EAGER):
    """Train every vertex of a line, curve (a `Curve.through` networks) or simplex (all vertices free)
    on the loss at one drawn point per minibatch plus `spread` times the vertices' squared cosine
    (Wortsman et al. 2021). Keywords as `train_network`'s; returns (losses per epoch, optimizer)."""
    ranges = matrix_ranges(span)

    def step_loss(forward, x, y, gen):
        # The same draw on every rank: the same generator, the same sequence.
        where = span.sample_t(gen) if isinstance(span, Curve) else span.sample_weights(gen)
        loss = data.task.loss(forward(x, where), y)
        if spread:
            loss = loss + spread * squared_cosine(span, ranges).to(loss.dtype)
        return loss

    free = [p for p in span.parameters() if p.requires_grad]
    return fit(span, free, step_loss, data, cfg, weight_decay=cfg.wd,
               checkpointing=Checkpointing(checkpoint, resume, settings), hooks=Hooks(progress, desc), speed=speed)


def subspace_metrics(span: Curve | Simplex, data: DataSource, speed: Speed = EAGER) -> tuple[nn.Module, dict]:
    """What a trained subspace (Wortsman et al. 2021) is measured by: its midpoint (t = 0.5 of a line or curve,
    the centroid of a simplex) as a network with BatchNorm recomputed, and {"metrics": each vertex's and the
    midpoint's train/test metrics of the data's task (BN recomputed; "vertex0", ..., "midpoint"), "squared_cosine": the
    spread term between the vertices' weight matrices, "distances": (K, K) Euclidean distances between
    vertices}."""
    if not isinstance(span, (Curve, Simplex)):
        raise ModeconnError(f"subspace_metrics measures a trained Curve or Simplex (train_subspace's), got "
                            f"{type(span).__name__}")
    middle = 0.5 if isinstance(span, Curve) else span.centroid()
    mid = span.model_at(middle)
    recompute_bn(mid, data.bn_batches(500), speed, data.task)
    metrics = {f"vertex{k}": metrics_with_bn(span.control_model(k), data, speed=speed).to_dict()
               for k in range(span.num_points)}
    metrics["midpoint"] = split_metrics(mid, data, speed=speed).to_dict()
    with torch.no_grad():
        cos2 = float(squared_cosine(span, matrix_ranges(span)))
    return mid, {"metrics": metrics, "squared_cosine": cos2, "distances": span.distances().tolist()}
