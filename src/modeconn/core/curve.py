"""A curve in weight space between two networks of any architecture.

Every curve is phi(t) = sum_k c_k(t) theta_k: linear in its control points theta (a (K, P) tensor),
so a point costs one small matmul, and the network runs through `torch.func.functional_call`
on views of that vector. No layer is rewritten and any `nn.Module` works.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call

from ..errors import ModeconnError
from .families import FAMILIES, check_family, coefficients
from .flat import check_same_architecture, float_buffer_space, int_buffer_space, parameter_space


class Curve(nn.Module):
    """phi_theta: [0, 1] -> weights, with phi(0) = start and phi(1) = end.

    Free control points are parameters, fixed ones buffers. Floating-point buffers (BatchNorm
    running statistics) follow the same coefficients over fixed control points, so t=0 and t=1
    reproduce the endpoints exactly; in between they are placeholders until BN is recomputed.
    """

    def __init__(self, start: nn.Module, end: nn.Module, kind: str = "bezier", bends: int = 1,
                 free_endpoints: bool = False):
        super().__init__()
        if bends < 0:
            raise ModeconnError(f"bends must be >= 0, got {bends}")
        check_same_architecture(start.state_dict(), end.state_dict())
        check_family(kind, bends + 2)
        self.kind, self.num_points = kind, bends + 2
        # The template runs the computation; it lives on the meta device and owns no data.
        object.__setattr__(self, "net", copy.deepcopy(start).to("meta"))
        self.param_space = parameter_space(start)
        self.fbuf_space = float_buffer_space(start)
        self.ibuf_space = int_buffer_space(start)
        self._sizes = [s.numel for s in self.param_space.slots]

        w_start = self.param_space.flatten(dict(start.named_parameters()))
        w_end = self.param_space.flatten(dict(end.named_parameters()))
        device = w_start.device  # everything below lives where the networks are (a GPU, or meta)
        s = torch.linspace(0, 1, self.num_points, dtype=w_start.dtype, device=device).unsqueeze(1)
        points = (1 - s) * w_start + s * w_end  # bends start on the segment
        # Which control points are fixed, decided in Python: reading a mask back from a GPU would sync.
        self._fixed_list = [not free_endpoints and k in (0, self.num_points - 1) for k in range(self.num_points)]
        fixed = torch.tensor(self._fixed_list, dtype=torch.bool, device=device)
        free_rows = [k for k, f in enumerate(self._fixed_list) if not f]
        fixed_rows = [k for k, f in enumerate(self._fixed_list) if f]
        self.register_buffer("fixed_mask", fixed)
        self.register_buffer("fixed_points", points[fixed_rows].clone())
        self.free_points = nn.Parameter(points[free_rows].clone())

        b_start = self.fbuf_space.flatten(dict(start.named_buffers()), like=w_start)
        b_end = self.fbuf_space.flatten(dict(end.named_buffers()), like=w_start)
        self.register_buffer("buffer_points", ((1 - s) * b_start + s * b_end).to(b_start.dtype))
        self.register_buffer("int_buffers", self.ibuf_space.flatten(
            dict(start.named_buffers()), like=torch.zeros(0, dtype=torch.long, device=device)))

    # --- points on the curve -------------------------------------------------------------------
    def control_points(self) -> torch.Tensor:
        """All K control points in order, as one (K, P) tensor."""
        free, fixed = iter(self.free_points), iter(self.fixed_points)
        return torch.stack([next(fixed) if f else next(free) for f in self._fixed_list])

    def point(self, t: float, wd: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """phi(t) as a flat vector and as a full state dict of views into it (plus buffers).

        Differentiable w.r.t. the free control points. With `wd`, the gradient of
        0.5 * wd * ||phi(t)||^2 is added in the backward pass, saving passes over the weights;
        add that term's value to the loss yourself if you report it.
        """
        c = FAMILIES[self.kind](float(t), self.num_points)
        c_free = [ci for ci, f in zip(c, self._fixed_list) if not f]
        c_fixed = [ci for ci, f in zip(c, self._fixed_list) if f]
        w, *pieces = _CurvePoint.apply(self.free_points, self.fixed_points, c_free, c_fixed, wd, self._sizes)
        state = {s.name: p.view(s.shape) for s, p in zip(self.param_space.slots, pieces)}
        state.update(self.buffers_at(c))
        return w, state

    def weights(self, t: float, wd: float = 0.0) -> torch.Tensor:
        """The flat parameter vector phi(t)."""
        return self.point(t, wd)[0]

    def buffers_at(self, c) -> dict[str, torch.Tensor]:
        """Buffers for coefficients c: float ones interpolated, integer ones from the start network."""
        state = {}
        if self.fbuf_space.size:
            b = sum(ci * row for ci, row in zip(c, self.buffer_points))
            state = self.fbuf_space.unflatten(b)
        state.update(self.ibuf_space.unflatten(self.int_buffers.clone()))
        return state

    def state_at(self, t: float, wd: float = 0.0) -> dict[str, torch.Tensor]:
        """A full state dict (parameters and buffers) for the network at phi(t)."""
        return self.point(t, wd)[1]

    def forward(self, x: torch.Tensor, t: float, wd: float = 0.0, with_weights: bool = False):
        """Run the network at phi(t) on x; with `with_weights`, return (logits, detached phi(t))."""
        w, state = self.point(t, wd)
        logits = self.run(state, x)
        return (logits, w.detach()) if with_weights else logits

    def run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run the network with a state from `point` or `state_at` (to reuse one phi(t))."""
        compiled = self.__dict__.get("_compiled_run")
        return compiled(state, x) if compiled is not None else self._run_net(state, x)

    def compile_network(self) -> None:
        """torch.compile the network run only: t and phi(t) stay outside the graph (done once)."""
        if "_compiled_run" not in self.__dict__:
            object.__setattr__(self, "_compiled_run", torch.compile(self._run_net))

    def _run_net(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, state, (x,))

    def model_at(self, t) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at phi(t)."""
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in self.state_at(t).items()}
        model = copy.deepcopy(self.net).to_empty(device=self.fixed_points.device)
        model.load_state_dict(state)
        model.train(self.training)
        return model

    def control_model(self, k: int) -> nn.Module:
        """An ordinary `nn.Module` holding control point k (its buffers as at that point's knot)."""
        with torch.no_grad():
            state = self.param_space.unflatten(self.control_points()[k].detach().clone())
            state.update({n: v.clone() for n, v in self.buffers_at([float(i == k) for i in range(self.num_points)]).items()})
        model = copy.deepcopy(self.net).to_empty(device=self.fixed_points.device)
        model.load_state_dict(state)
        return model.train(self.training)

    def length(self, steps: int = 1000) -> float:
        """Arc length of the curve, integrated over `steps` chords (exact for a polygonal chain)."""
        with torch.no_grad():
            theta = self.control_points().to(torch.float64)
            theta = theta - theta[0]  # coefficient differences sum to 0; centring avoids cancellation
            gram = theta @ theta.T
            c = coefficients(self.kind, torch.linspace(0, 1, steps + 1, device="cpu"), self.num_points).to(gram.device)
            d = c[1:] - c[:-1]
            sq = torch.einsum("nk,kl,nl->n", d, gram, d).clamp(min=0)
            return float(sq.sqrt().sum())

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.train(mode)
        return self


class _CurvePoint(torch.autograd.Function):
    """w = sum_k c_k theta_k with scalar coefficients, returned whole and split per parameter.

    Written by hand because the generic route (a (1, K) @ (K, P) product, autograd's split and
    cat, a separate weight-decay term) costs several extra full passes and allocations over the
    P weights per step, which dominated large networks on CPU. Here the backward concatenates
    the per-parameter gradients straight into the free points' gradient and adds the decay there.
    """

    @staticmethod
    def forward(ctx, free, fixed, c_free, c_fixed, wd, sizes):
        w = None
        for rows, coeffs in ((free, c_free), (fixed, c_fixed)):
            for row, ci in zip(rows, coeffs):
                if w is None:
                    w = row * ci
                elif ci != 0.0:
                    w.add_(row, alpha=ci)
        ctx.c_free, ctx.wd, ctx.sizes = c_free, wd, sizes
        ctx.set_materialize_grads(False)
        if wd:
            ctx.save_for_backward(w)
        return (w, *torch.split(w, sizes))

    @staticmethod
    def backward(ctx, grad_w, *grad_pieces):
        nothing = (None,) * 6
        if not ctx.needs_input_grad[0] or not ctx.c_free:
            return nothing
        ref = grad_w if grad_w is not None else next((g for g in grad_pieces if g is not None), None)
        if ref is None and not ctx.wd:
            return nothing
        if ref is None:
            ref = ctx.saved_tensors[0]
        grad_free = torch.empty((len(ctx.c_free), sum(ctx.sizes)), dtype=ref.dtype, device=ref.device)
        base = grad_free[0]
        parts = [g.reshape(-1) if g is not None else ref.new_zeros(n) for g, n in zip(grad_pieces, ctx.sizes)]
        torch.cat(parts, out=base)
        if grad_w is not None:
            base.add_(grad_w)
        if ctx.wd:  # d/dw of 0.5 wd ||w||^2 is wd w
            base.add_(ctx.saved_tensors[0], alpha=ctx.wd)
        for k in reversed(range(len(ctx.c_free))):  # row 0 last: it holds `base`
            torch.mul(base, ctx.c_free[k], out=grad_free[k])
        return (grad_free, None, None, None, None, None)
