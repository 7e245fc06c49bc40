"""A curve in weight space between two networks of any architecture.

Every curve is phi(t) = sum_k c_k(t) theta_k: linear in its control points theta (a (K, P) tensor),
so a point costs one small matmul, and the network runs on views of that vector, written into a
template module as `torch.func.functional_call` would (see `_Binder`). No layer is rewritten and
any `nn.Module` works.
"""
from __future__ import annotations

import copy
import functools

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
        self._ties = _ties(start)
        object.__setattr__(self, "net", _retie(copy.deepcopy(start).to("meta"), self._ties))
        self.param_space = parameter_space(start)
        self.fbuf_space = float_buffer_space(start)
        self.ibuf_space = int_buffer_space(start)
        self._sizes = [s.numel for s in self.param_space.slots]
        # (name, shape) of each slot; shape None where split's 1-D piece already has it (no view node)
        self._shapes = [(s.name, None if len(s.shape) == 1 else s.shape) for s in self.param_space.slots]

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
        self._free_rows, self._fixed_rows = free_rows, fixed_rows
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
        w = self._combine(c, wd)
        state = {name: p if shape is None else p.view(shape) for (name, shape), p in
                 zip(self._shapes, torch.split(w, self._sizes))}
        state.update(self.buffers_at(c))
        return w, state

    def _combine(self, c: list[float], wd: float) -> torch.Tensor:
        """phi = sum_k c_k theta_k, built from autograd's own ops (its bookkeeping runs in C++).

        The fixed rows are summed without autograd; each free row is added with its coefficient,
        whose backward scales the gradient once. The decay's gradient, wd * phi, joins in a hook on
        phi: one pass over the weights, no extra term in the graph. Python floats as coefficients
        keep the device from ever waiting on the host.
        """
        if self._fixed_rows == [0, 2] and self._free_rows == [1]:  # the default: fixed ends, one bend
            w = self._combine_one_bend(c)
        else:
            w = self._combine_general(c)
        if wd and w.requires_grad:
            w.register_hook(functools.partial(_add_decay, w.detach(), wd))
        return w

    def _combine_one_bend(self, c: list[float]) -> torch.Tensor:
        """c0 A + c1 F + c2 B in two passes over the weights instead of three.

        Both families' coefficients sum to one, so this is lerp(lerp(A, B, c2 / (c0 + c2)), F, c1);
        lerp's backward scales F's gradient by c1 as an addition would.
        """
        ends = c[0] + c[2]
        inner = torch.lerp(self.fixed_points[0], self.fixed_points[1], c[2] / ends if ends else 0.0)
        return torch.lerp(inner, self.free_points.view(-1), c[1])

    def _combine_general(self, c: list[float]) -> torch.Tensor:
        w = None
        for row, k in zip(self.fixed_points, self._fixed_rows):  # buffers: no autograd here
            w = row * c[k] if w is None else w.add_(row, alpha=c[k])
        free = self.free_points
        rows = [free.view(-1)] if len(free) == 1 else free.unbind(0)  # a view: no copy in the backward
        for row, k in zip(rows, self._free_rows):
            w = row * c[k] if w is None else torch.add(w, row, alpha=c[k])
        if not self._free_rows and free.requires_grad:  # a line: nothing free, but training still backpropagates
            w = w + free.sum(0)
        return w

    def weights(self, t: float, wd: float = 0.0) -> torch.Tensor:
        """The flat parameter vector phi(t)."""
        return self.point(t, wd)[0]

    def buffers_at(self, c) -> dict[str, torch.Tensor]:
        """Buffers for coefficients c: float ones interpolated, integer ones from the start network."""
        state = {}
        if self.fbuf_space.size:
            b = self.buffer_points[0] * c[0]
            for ci, row in zip(c[1:], self.buffer_points[1:]):
                b.add_(row, alpha=ci)
            state = self.fbuf_space.unflatten(b)
        if self.ibuf_space.size:  # a copy: BatchNorm counts batches in it
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
        return compiled(state, x) if compiled is not None else self._bound_run(state, x)

    def compile_network(self) -> None:
        """torch.compile the network run only: t and phi(t) stay outside the graph (done once)."""
        if "_compiled_run" not in self.__dict__:
            object.__setattr__(self, "_compiled_run", torch.compile(self._functional_run))

    def _functional_run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, state, (x,))

    def _bound_run(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        binder = self.__dict__.get("_binder")
        if binder is None:  # built on first use; False where the network needs functional_call
            binder = _Binder.for_module(self.net) or False
            object.__setattr__(self, "_binder", binder)
        return binder(state, x) if binder else self._functional_run(state, x)

    def model_at(self, t) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at phi(t)."""
        with torch.no_grad():
            return self._module_with({k: v.detach().clone() for k, v in self.state_at(t).items()})

    def control_model(self, k: int) -> nn.Module:
        """An ordinary `nn.Module` holding control point k (its buffers as at that point's knot)."""
        with torch.no_grad():
            state = self.param_space.unflatten(self.control_points()[k].detach().clone())
            state.update({n: v.clone() for n, v in self.buffers_at([float(i == k) for i in range(self.num_points)]).items()})
        return self._module_with(state)

    def _module_with(self, state: dict[str, torch.Tensor]) -> nn.Module:
        """A copy of the network on the curve's device holding `state` (tied tensors kept tied)."""
        model = _retie(copy.deepcopy(self.net).to_empty(device=self.fixed_points.device), self._ties)
        model.load_state_dict({**state, **{alias: state[name] for alias, name in self._ties}})
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


def _ties(module: nn.Module) -> list[tuple[str, str]]:
    """(alias, name) for each tensor a module holds under a second name (a tied weight)."""
    first, ties = {}, []
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for slots in (sub._parameters, sub._buffers):
            for key, tensor in slots.items():
                if tensor is not None:
                    full = f"{prefix}.{key}" if prefix else key
                    name = first.setdefault(id(tensor), full)
                    if name != full:
                        ties.append((full, name))
    return ties


def _retie(module: nn.Module, ties: list[tuple[str, str]]) -> nn.Module:
    """Make each alias the same tensor as its name again (moving a module between devices unties them)."""
    for alias, name in ties:
        owner, _, key = alias.rpartition(".")
        sub = module.get_submodule(owner)
        if key in sub._parameters:
            sub._parameters[key] = module.get_parameter(name)
        else:
            sub._buffers[key] = module.get_buffer(name)
    return module


class _Binder:
    """Runs a template module with the step's tensors in place of its parameters and buffers.

    Does what `functional_call` does for ordinary modules at a fraction of its per-call cost: the
    dict entries to fill (every alias of a tied tensor included) are found once, and each call
    writes the step's tensors into them and puts the template's placeholders back afterwards.
    `functional_call` re-resolves every name and swaps each tensor in and out on each call, which
    was most of a curve step's overhead on networks whose step takes a millisecond.
    """

    def __init__(self, targets: dict[str, list[tuple[dict, str]]], net: nn.Module):
        self.targets, self.net = targets, net
        self.placeholders = [(slots, key, slots[key]) for places in targets.values() for slots, key in places]

    @classmethod
    def for_module(cls, net: nn.Module) -> "_Binder | None":
        """A binder for `net`, or None where only `functional_call` is safe: a module with its own
        `__setattr__` (e.g. RNNs cache their weights there) would not see tensors written this way."""
        if any(type(m).__setattr__ is not nn.Module.__setattr__ for m in net.modules()):
            return None
        canonical = {id(t): name for name, t in [*net.named_parameters(), *net.named_buffers()]}
        targets: dict[str, list[tuple[dict, str]]] = {}
        for prefix, module in net.named_modules(remove_duplicate=False):
            for slots in (module._parameters, module._buffers):
                for key, tensor in slots.items():
                    if tensor is not None:
                        targets.setdefault(canonical[id(tensor)], []).append((slots, key))
        return cls(targets, net)

    def __call__(self, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        try:
            for name, tensor in state.items():
                for slots, key in self.targets[name]:
                    slots[key] = tensor
            return self.net(x)
        finally:  # the template keeps no reference to this step's tensors
            for slots, key, placeholder in self.placeholders:
                slots[key] = placeholder


def _add_decay(w: torch.Tensor, wd: float, grad: torch.Tensor) -> torch.Tensor:
    """phi's gradient plus that of 0.5 * wd * ||phi||^2."""
    return grad.add(w, alpha=wd)
