"""Weights spanned by control points: phi = sum_k c_k theta_k over a (K, P) tensor, any network.

The common core of curves (coefficients from t) and simplexes (barycentric weights). Free control
points are one parameter, fixed ones a buffer; floating-point buffers (BatchNorm statistics) follow
the same coefficients and are placeholders until BN is recomputed; the network runs on views of
phi written into a template module (`binding.Binder`), so no layer is rewritten.
"""
from __future__ import annotations

import copy
import functools
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from .binding import Binder, retie, tied_names
from .flat import check_same_architecture, float_buffer_space, int_buffer_space, parameter_space, parameters_vector


class WeightSpan(nn.Module):
    """K control points of one architecture and the networks at their combinations."""

    # Declared for the type checker: set in __init__ (buffers by register_buffer, the template through
    # object.__setattr__ so it is no submodule), which nn.Module's __getattr__ would type as Tensor | Module.
    net: nn.Module
    fixed_mask: torch.Tensor
    fixed_points: torch.Tensor
    buffer_points: torch.Tensor
    int_buffers: torch.Tensor

    def __init__(self, template: nn.Module, points: torch.Tensor, fixed: list[bool], buffer_points: torch.Tensor):
        """`points` (K, P) in `parameter_space(template)` order, `fixed[k]` whether row k is fixed,
        `buffer_points` (K, B) the float buffers at each control point."""
        super().__init__()
        self._ties = tied_names(template)
        # The template runs the computation; it lives on the meta device and owns no data.
        object.__setattr__(self, "net", retie(copy.deepcopy(template).to("meta"), self._ties))
        self.param_space = parameter_space(template)
        self.fbuf_space = float_buffer_space(template)
        self.ibuf_space = int_buffer_space(template)
        self._sizes = [s.numel for s in self.param_space.slots]
        # (name, shape) of each slot; shape None where split's 1-D piece already has it (no view node)
        self._shapes = [(s.name, None if len(s.shape) == 1 else s.shape) for s in self.param_space.slots]
        device = points.device
        # Which control points are fixed, decided in Python: reading a mask back from a GPU would sync.
        self._fixed_list = list(fixed)
        self._free_rows = [k for k, f in enumerate(fixed) if not f]
        self._fixed_rows = [k for k, f in enumerate(fixed) if f]
        self.register_buffer("fixed_mask", torch.tensor(self._fixed_list, dtype=torch.bool, device=device))
        self.register_buffer("fixed_points", points[self._fixed_rows].clone())
        self.free_points = nn.Parameter(points[self._free_rows].clone())
        self.register_buffer("buffer_points", buffer_points)
        self.register_buffer("int_buffers", self.ibuf_space.flatten(
            dict(template.named_buffers()), like=torch.zeros(0, dtype=torch.long, device=device)))

    @property
    def num_points(self) -> int:
        return len(self._fixed_list)

    def control_points(self) -> torch.Tensor:
        """All K control points in order, as one (K, P) tensor."""
        if not self._fixed_rows:  # every point free: the parameter itself, no copy
            return self.free_points
        free, fixed = iter(self.free_points), iter(self.fixed_points)
        return torch.stack([next(fixed) if f else next(free) for f in self._fixed_list])

    def distances(self) -> torch.Tensor:
        """(K, K) Euclidean distances between the control points."""
        with torch.no_grad():
            v = self.control_points().double()[None]
            return torch.cdist(v, v)[0]

    def point_at(self, c: list[float], wd: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """phi = sum_k c_k theta_k as a flat vector and as a full state dict of views into it (plus buffers).

        Differentiable w.r.t. the free control points. With `wd`, the gradient of
        0.5 * wd * ||phi||^2 is added in the backward pass (add its value to a loss yourself if
        you report it).
        """
        w = self._combine(c, wd)
        state = {name: p if shape is None else p.view(shape) for (name, shape), p in
                 zip(self._shapes, torch.split(w, self._sizes))}
        state.update(self.buffers_at(c))
        return w, state

    def _combine(self, c: list[float], wd: float) -> torch.Tensor:
        """phi from autograd's own ops (its bookkeeping runs in C++), the decay's gradient in a hook.

        The decay joins as one pass over the weights, with no extra term in the graph. Python floats
        as coefficients keep the device from ever waiting on the host.
        """
        w = self._weighted_sum(c)
        if wd and w.requires_grad:
            w.register_hook(functools.partial(_add_decay, w.detach(), wd))
        return w

    def _weighted_sum(self, c: list[float]) -> torch.Tensor:
        """Fixed rows summed outside autograd; each free row added with its coefficient, whose
        backward scales the gradient once."""
        if len(self._free_rows) == 1 and len(self._fixed_rows) >= 2 and abs(sum(c) - 1) < 1e-9:
            return self._lerp_to_free(c)
        return self._general_sum(c)

    def _general_sum(self, c: list[float]) -> torch.Tensor:
        """sum_k c_k theta_k for any rows and coefficients, one pass per row."""
        w: torch.Tensor | None = None
        for row, k in zip(self.fixed_points, self._fixed_rows):  # buffers: no autograd here
            w = row * c[k] if w is None else w.add_(row, alpha=c[k])
        free = self.free_points
        rows = [free.view(-1)] if len(free) == 1 else free.unbind(0)  # a view: no copy in the backward
        for row, k in zip(rows, self._free_rows):
            w = row * c[k] if w is None else torch.add(w, row, alpha=c[k])
        assert w is not None, "a span has at least one control point"
        if not self._free_rows and free.requires_grad:  # nothing free, but training still backpropagates
            w = w + free.sum(0)
        return w

    def _lerp_to_free(self, c: list[float]) -> torch.Tensor:
        """One free row F and coefficients summing to one (curves, simplexes): phi = lerp(base, F, c_F)
        with base the fixed rows' normalised combination; two fixed rows make base one lerp too, so a
        one-bend curve or a SPRO step costs two passes over the weights instead of three."""
        k, rows = self._free_rows[0], self._fixed_rows
        rest = 1.0 - c[k]
        if len(rows) == 2:
            base = torch.lerp(self.fixed_points[0], self.fixed_points[1], c[rows[1]] / rest if rest else 0.0)
        else:
            base = self.fixed_points[0] * (c[rows[0]] / rest if rest else 1.0)
            for row, j in zip(self.fixed_points[1:], rows[1:]):
                base.add_(row, alpha=c[j] / rest if rest else 0.0)
        return torch.lerp(base, self.free_points.view(-1), c[k])

    def buffers_at(self, c) -> dict[str, torch.Tensor]:
        """Buffers for coefficients c: float ones combined alike, integer ones from the first network."""
        state = {}
        if self.fbuf_space.size:
            b = self.buffer_points[0] * c[0]
            for ci, row in zip(c[1:], self.buffer_points[1:]):
                b.add_(row, alpha=ci)
            state = self.fbuf_space.unflatten(b)
        if self.ibuf_space.size:  # a copy: BatchNorm counts batches in it
            state.update(self.ibuf_space.unflatten(self.int_buffers.clone()))
        return state

    def run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Run the network with a state from `point_at` (to reuse one phi)."""
        compiled = self.__dict__.get("_compiled_run")
        return compiled(state, x) if compiled is not None else self._bound_run(state, x)

    def compile_network(self) -> None:
        """torch.compile the network run only: the coefficients and phi stay outside the graph (done once)."""
        if "_compiled_run" not in self.__dict__:
            object.__setattr__(self, "_compiled_run", torch.compile(self._functional_run))

    def _functional_run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, state, (x,))

    def _bound_run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        binder: Binder | Literal[False] | None = self.__dict__.get("_binder")
        if binder is None:  # built on first use; False where the network needs functional_call
            binder = Binder.for_module(self.net) or False
            object.__setattr__(self, "_binder", binder)
        return binder(state, x) if binder else self._functional_run(state, x)

    def module_at(self, c: list[float]) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at coefficients c."""
        with torch.no_grad():
            return self._module_with({k: v.detach().clone() for k, v in self.point_at(c)[1].items()})

    def control_model(self, k: int) -> nn.Module:
        """An ordinary `nn.Module` holding control point k (its buffers as at that point)."""
        return self.module_at([float(i == k) for i in range(self.num_points)])

    def _module_with(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """A copy of the network on the span's device holding `state` (tied tensors kept tied)."""
        model = retie(copy.deepcopy(self.net).to_empty(device=self.fixed_points.device), self._ties)
        # every tensor written, non-persistent buffers included (BERT's position_ids): load_state_dict would refuse
        # those, and to_empty left them uninitialised
        slots = {**dict(model.named_parameters()), **dict(model.named_buffers())}
        if set(slots) != set(state):
            raise RuntimeError(f"a span's state and its network differ in {sorted(set(slots) ^ set(state))[:4]}")
        with torch.no_grad():
            for name, tensor in slots.items():
                tensor.copy_(state[name])
        return model.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.train(mode)
        return self


def _add_decay(w: torch.Tensor, wd: float, grad: torch.Tensor) -> torch.Tensor:
    """phi's gradient plus that of 0.5 * wd * ||phi||^2."""
    return grad.add(w, alpha=wd)


def stack_networks(networks: list[nn.Module], label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The networks' weights as (K, P) rows and their float buffers as (K, B) rows, refusing
    networks of another architecture than the first (named `label` k in the message)."""
    for k, net in enumerate(networks[1:], 1):
        check_same_architecture(networks[0].state_dict(), net.state_dict(), what=(f"{label} 0", f"{label} {k}"))
    points = torch.stack([parameters_vector(n) for n in networks])
    buffers = torch.stack([float_buffer_space(n).flatten(dict(n.named_buffers()), like=points) for n in networks])
    return points, buffers
