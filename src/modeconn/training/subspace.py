"""Subspaces trained from scratch (Wortsman et al. 2021): a line, curve or simplex, every vertex free.

Each minibatch steps on the loss at one point drawn from the subspace (t ~ U(0, 1) on a line or
curve, Dirichlet(1) weights on a simplex) plus `spread` times the mean squared cosine similarity
of the vertices, which keeps them apart. Weight decay acts on each vertex, as in their code.
"""
from __future__ import annotations

import torch
from torch.nn.functional import cross_entropy

from ..core.curve import Curve
from ..core.simplex import Simplex
from ..core.span import WeightSpan
from ..data.datasets import Dataset
from .train import TrainConfig, fit

SPREAD = 1.0  # Wortsman et al.'s beta for lines, curves and simplexes


def matrix_mask(span: WeightSpan) -> torch.Tensor:
    """1 at every entry (of the flat weights) of a weight matrix or kernel, else 0: what the spread
    term compares. Wortsman et al. compare convolution kernels only; biases and norm scales (all
    ones at initialisation) would make every pair look alike."""
    pieces = [torch.full((slot.numel,), float(len(slot.shape) >= 2), device="cpu") for slot in span.param_space.slots]
    mask = torch.cat(pieces)
    if not mask.any():  # a network of vectors only: compare everything
        mask.fill_(1.0)
    return mask.to(span.free_points)


class _MaskedGram(torch.autograd.Function):
    """G = (V * m) V^T for a 0/1 mask m, with its gradient in two passes over V
    (autograd's own would make five)."""

    @staticmethod
    def forward(ctx, v, mask):
        ctx.save_for_backward(v, mask)
        return (v * mask) @ v.T

    @staticmethod
    def backward(ctx, grad):
        v, mask = ctx.saved_tensors
        return ((grad + grad.T) @ v).mul_(mask), None


def squared_cosine(span: WeightSpan, mask: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of control points of their squared cosine similarity over the entries in `mask`."""
    gram = _MaskedGram.apply(span.control_points(), mask)
    norms = gram.diagonal()
    cos2 = gram.square() / (norms[:, None] * norms[None, :])
    k = len(norms)
    return (cos2.sum() - cos2.diagonal().sum()) / (k * (k - 1))


def train_subspace(span: Curve | Simplex, data: Dataset, cfg: TrainConfig, spread: float = SPREAD, **kwargs):
    """Train every vertex of a line, curve (a `Curve.through` networks) or simplex (all vertices free)
    on the loss at one drawn point per minibatch plus `spread` times the vertices' squared cosine."""
    is_curve = isinstance(span, Curve)
    mask = matrix_mask(span)

    def step_loss(forward, x, y, gen):
        # The same draw on every rank: the same generator, the same sequence.
        where = float(torch.rand((), generator=gen, device="cpu")) if is_curve else span.sample_weights(gen)
        loss = cross_entropy(forward(x, where), y)
        if spread:
            loss = loss + spread * squared_cosine(span, mask).to(loss.dtype)
        return loss

    free = [p for p in span.parameters() if p.requires_grad]
    return fit(span, free, step_loss, data, cfg, weight_decay=cfg.wd, desc=kwargs.pop("desc", "subspace"), **kwargs)
