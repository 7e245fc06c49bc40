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

from .errors import ModeconnError
from .families import coefficients
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
        coefficients(kind, 0.0, bends + 2)  # validates kind
        self.kind, self.num_points = kind, bends + 2
        # The template runs the computation; it lives on the meta device and owns no data.
        object.__setattr__(self, "net", copy.deepcopy(start).to("meta"))
        self.param_space = parameter_space(start)
        self.fbuf_space = float_buffer_space(start)
        self.ibuf_space = int_buffer_space(start)

        w_start = self.param_space.flatten(dict(start.named_parameters()))
        w_end = self.param_space.flatten(dict(end.named_parameters()))
        s = torch.linspace(0, 1, self.num_points, dtype=w_start.dtype).unsqueeze(1)
        points = (1 - s) * w_start + s * w_end  # bends start on the segment
        fixed = torch.zeros(self.num_points, dtype=torch.bool)
        if not free_endpoints:
            fixed[0] = fixed[-1] = True
        self.register_buffer("fixed_mask", fixed)
        self.register_buffer("fixed_points", points[fixed].clone())
        self.free_points = nn.Parameter(points[~fixed].clone())

        b_start = self.fbuf_space.flatten(dict(start.named_buffers()))
        b_end = self.fbuf_space.flatten(dict(end.named_buffers()))
        self.register_buffer("buffer_points", ((1 - s) * b_start + s * b_end).to(b_start.dtype))
        self.register_buffer("int_buffers", self.ibuf_space.flatten(dict(start.named_buffers())))

    # --- points on the curve -------------------------------------------------------------------
    def coefficients(self, t) -> torch.Tensor:
        """c(t) for scalar or 1-D t, in the control points' dtype and device."""
        return coefficients(self.kind, t, self.num_points).to(self.free_points.dtype).to(
            self.fixed_points.device, non_blocking=True)

    def control_points(self) -> torch.Tensor:
        """All K control points in order, as one (K, P) tensor."""
        points = torch.empty(self.num_points, self.param_space.size, dtype=self.free_points.dtype,
                             device=self.free_points.device)
        points[self.fixed_mask] = self.fixed_points
        points[~self.fixed_mask] = self.free_points
        return points

    def weights(self, t) -> torch.Tensor:
        """The flat parameter vector phi(t); differentiable w.r.t. the free control points."""
        c = self.coefficients(t)
        w = c[~self.fixed_mask] @ self.free_points
        if self.fixed_points.shape[0]:
            w = w + c[self.fixed_mask] @ self.fixed_points
        return w

    def buffers_at(self, t) -> dict[str, torch.Tensor]:
        """Buffers at t: float ones interpolated with c(t), integer ones from the start network."""
        c = self.coefficients(t).to(self.buffer_points.dtype)
        state = self.fbuf_space.unflatten(c @ self.buffer_points) if self.fbuf_space.size else {}
        state.update(self.ibuf_space.unflatten(self.int_buffers.clone()))
        return state

    def state_at(self, t, weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """A full state dict (parameters and buffers) for the network at phi(t)."""
        w = self.weights(t) if weights is None else weights
        state = self.param_space.unflatten(w)
        state.update(self.buffers_at(t))
        return state

    def forward(self, x: torch.Tensor, t, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Run the network at phi(t) on x (pass `weights` to reuse an already built phi(t))."""
        return functional_call(self.net, self.state_at(t, weights), (x,))

    def model_at(self, t) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at phi(t)."""
        with torch.no_grad():
            state = {k: v.detach().clone() for k, v in self.state_at(t).items()}
        model = copy.deepcopy(self.net).to_empty(device=self.fixed_points.device)
        model.load_state_dict(state)
        model.train(self.training)
        return model

    def length(self, steps: int = 1000) -> float:
        """Arc length of the curve, integrated over `steps` chords (exact for a polygonal chain)."""
        with torch.no_grad():
            theta = self.control_points().to(torch.float64)
            theta = theta - theta[0]  # coefficient differences sum to 0; centring avoids cancellation
            gram = theta @ theta.T
            c = coefficients(self.kind, torch.linspace(0, 1, steps + 1), self.num_points).to(gram.device)
            d = c[1:] - c[:-1]
            sq = torch.einsum("nk,kl,nl->n", d, gram, d).clamp(min=0)
            return float(sq.sqrt().sum())

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.train(mode)
        return self
