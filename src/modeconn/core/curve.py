"""A curve in weight space between two networks of any architecture.

Every curve is phi(t) = sum_k c_k(t) theta_k: linear in its control points theta (a (K, P) tensor),
so a point costs a few passes over the weights, and the network runs on views of that vector
(`span.WeightSpan`). No layer is rewritten and any `nn.Module` works.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ModeconnError
from .families import FAMILIES, check_family, coefficients
from .flat import check_same_architecture, float_buffer_space, parameters_vector
from .span import WeightSpan, stack_networks


def curve_t(t) -> float:
    """t as a float, refusing in one line a value off the curve: not a finite number in [0, 1]."""
    value = float(t)
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise ModeconnError(f"t must be a finite number in [0, 1] (a curve runs from t = 0 to t = 1), got {t}")
    return value

class Curve(WeightSpan):
    """phi_theta: [0, 1] -> weights, with phi(0) = start and phi(1) = end.

    Free control points are parameters, fixed ones buffers. Floating-point buffers (BatchNorm
    running statistics) follow the same coefficients over fixed control points, so t=0 and t=1
    reproduce the endpoints exactly; in between they are placeholders until BN is recomputed.
    """

    def __init__(self, start: nn.Module, end: nn.Module, kind: str = "bezier", bends: int = 1,
                 free_endpoints: bool = False):
        if bends < 0:
            raise ModeconnError(f"bends must be >= 0, got {bends}")
        check_same_architecture(start.state_dict(), end.state_dict())
        check_family(kind, bends + 2)
        w_start, w_end = parameters_vector(start), parameters_vector(end)
        s = torch.linspace(0, 1, bends + 2, dtype=w_start.dtype, device=w_start.device).unsqueeze(1)
        b_start, b_end = (float_buffer_space(n).flatten(dict(n.named_buffers()), like=w_start) for n in (start, end))
        super().__init__(start, (1 - s) * w_start + s * w_end,  # bends start on the segment
                         [not free_endpoints and k in (0, bends + 1) for k in range(bends + 2)],
                         ((1 - s) * b_start + s * b_end).to(b_start.dtype))
        self.kind = kind

    @classmethod
    def through(cls, networks: list[nn.Module], kind: str = "bezier") -> Curve:
        """A curve whose control points are these networks, every one free (a subspace trained from
        scratch, Wortsman et al. 2021): 2 networks give a line, 3 a one-bend curve."""
        check_family(kind, len(networks))
        points, buffers = stack_networks(networks, "network")
        curve = cls.__new__(cls)
        WeightSpan.__init__(curve, networks[0], points, [False] * len(networks), buffers)
        curve.kind = kind
        return curve

    @staticmethod
    def sample_t(generator: torch.Generator) -> float:
        """t drawn uniformly from [0, 1) by a CPU generator: no device sync, and the same draws on
        every rank that seeds it alike."""
        return float(torch.rand((), generator=generator, device="cpu"))

    def point(self, t: float, wd: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """phi(t) as a flat vector and as a full state dict of views into it (plus buffers).

        Differentiable w.r.t. the free control points. With `wd`, the gradient of
        0.5 * wd * ||phi(t)||^2 is added in the backward pass, saving passes over the weights;
        add that term's value to the loss yourself if you report it.
        """
        return self.point_at(FAMILIES[self.kind](curve_t(t), self.num_points), wd)

    def weights(self, t: float, wd: float = 0.0) -> torch.Tensor:
        """The flat parameter vector phi(t)."""
        return self.point(t, wd)[0]

    def state_at(self, t: float, wd: float = 0.0) -> dict[str, torch.Tensor]:
        """A full state dict (parameters and buffers) for the network at phi(t)."""
        return self.point(t, wd)[1]

    def forward(self, x: torch.Tensor, t: float, wd: float = 0.0, with_weights: bool = False):
        """Run the network at phi(t) on x; with `with_weights`, return (logits, detached phi(t))."""
        w, state = self.point(t, wd)
        logits = self.run(state, x)
        return (logits, w.detach()) if with_weights else logits

    def model_at(self, t) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at phi(t). Raises ModeconnError for t not a
        finite number in [0, 1]."""
        return self.module_at(FAMILIES[self.kind](curve_t(t), self.num_points))

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

