"""The permutation symmetries of a network, found by tracing it with torch.fx: no spec written by hand.

Hidden units can be relabelled without changing what a network computes, provided every tensor
that touches them is permuted alike: a layer's output rows, BatchNorm's statistics, the next
layer's input columns, both sides of a residual addition. `permutation_spec` follows each
activation through the traced graph and records, for every group of units that must move
together, each (tensor, dimension) it acts on. A flatten after a conv turns a channel into a
block of features, and a concat lays groups side by side, so an axis holds a list of segments.
Inputs and outputs never move; whatever the tracer cannot prove safe stays fixed and is named.

A tensor the forward reaches more than once (a module called twice, a weight tied to another
module's, a module registered under two names) has each axis in exactly one group: every use
records its layout of every axis, and the uses are merged after the walk. Groups the uses put on
one axis become one group (a square layer applied twice forces P W P^T); a use that leaves the
axis fixed, or lays it out differently, fixes every group on it, and the tensor is named.
"""
from __future__ import annotations

import copy
import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch.fx as fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ..core.binding import tied_names
from ..errors import ModeconnError

F = nn.functional
ELEMENTWISE_MODULES = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.ReLU6, nn.Hardtanh,
                       nn.Softplus, nn.Mish, nn.Hardswish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                       nn.AlphaDropout, nn.Identity)
POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
                nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
ELEMENTWISE_FUNCTIONS = {torch.relu, F.relu, F.gelu, F.silu, F.leaky_relu, F.elu, F.relu6, F.hardtanh, F.softplus,
                         F.mish, F.hardswish, torch.tanh, torch.sigmoid, F.dropout, torch.nn.functional.dropout2d}
ELEMENTWISE_METHODS = {"relu", "relu_", "tanh", "sigmoid", "contiguous", "clone", "float", "to", "detach"}
POOL_FUNCTIONS = {F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
                  F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
                  F.adaptive_max_pool2d, F.adaptive_max_pool3d}
JOINING = {operator.add, operator.iadd, operator.sub, operator.mul, torch.add, torch.sub, torch.mul,
           "add", "add_", "sub", "mul", "mul_"}
FLATTENING = {torch.flatten, "flatten", "view", "reshape", torch.reshape}


@dataclass(frozen=True)
class Segment:
    """A stretch of a dimension: `size` units of `group` (None: fixed), each repeated `repeat` times in a row."""

    group: str | None
    size: int
    repeat: int = 1


@dataclass(frozen=True)
class Axis:
    """One dimension of one parameter or buffer, laid out as segments of groups."""

    name: str
    dim: int
    segments: tuple[Segment, ...]


@dataclass
class PermutationSpec:
    """Groups of units that permute together (name -> size), every axis they act on, and what stays fixed."""

    groups: dict[str, int]
    axes: list[Axis]
    fixed: list[str] = field(default_factory=list)  # ops and modules the tracer left unpermuted, with why
    # group -> the (fx node, dim) activations showing its units: one, or one per use of a tensor reached twice
    probes: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    layers: list[tuple[str, str, int]] = field(default_factory=list)  # hidden Linear/Conv: (module, fx node, dim)
    tied: dict[str, str] = field(default_factory=dict)  # alias -> the name the axes use, for tensors held twice
    reused: list[str] = field(default_factory=list)  # tensors the forward reaches more than once

    def axes_of(self, group: str) -> list[tuple[Axis, int]]:
        """(axis, segment index) pairs where `group` acts."""
        return [(a, i) for a in self.axes for i, s in enumerate(a.segments) if s.group == group]

    def tensors(self) -> list[str]:
        """Names of the tensors some group permutes."""
        return sorted({a.name for a in self.axes})


class _Groups:
    """Union-find over groups of units, with sizes and a fixed flag."""

    def __init__(self):
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}
        self.fixed: set[str] = set()

    def new(self, name: str, size: int) -> str:
        base, k = name, 1
        while name in self.parent:
            k += 1
            name = f"{base}#{k}"
        self.parent[name], self.size[name] = name, size
        return name

    def find(self, g: str) -> str:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        if self.size[ra] != self.size[rb]:
            return False
        if list(self.parent).index(rb) < list(self.parent).index(ra):
            ra, rb = rb, ra  # the group made first names the union
        self.parent[rb] = ra
        if rb in self.fixed:
            self.fixed.add(ra)
        return True

    def fix(self, g: str) -> None:
        self.fixed.add(self.find(g))


@dataclass(frozen=True)
class _Label:
    """Which dimension of an activation carries units, and how they are laid out."""

    dim: int
    segments: tuple[Segment, ...]


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """The model as an fx graph with every node's shape, or a one-line error naming what cannot be traced."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises several types; the message names the construct
        raise ModeconnError(f"torch.fx cannot trace {type(model).__name__} ({str(exc).splitlines()[0]}); "
                            "remove data-dependent control flow from its forward, or align by hand") from None
    try:
        ShapeProp(gm).propagate(example_input)
    except Exception as exc:
        raise ModeconnError(f"{type(model).__name__} does not run on an input of shape "
                            f"{tuple(example_input.shape)} ({str(exc).splitlines()[0]})") from None
    return gm


def permutation_spec(model: nn.Module, example_input: torch.Tensor) -> PermutationSpec:
    """The groups of hidden units of `model` that can be permuted together without changing its function."""
    gm = trace(copy.deepcopy(model).eval(), example_input)
    return _Tracer(gm, dict(tied_names(model))).run()


class _Tracer:
    def __init__(self, gm: fx.GraphModule, tied: dict[str, str]):
        self.gm, self.groups, self.tied = gm, _Groups(), tied
        self.labels: dict[fx.Node, _Label | None] = {}
        self.axes: list[tuple[str, int, tuple[Segment, ...]]] = []
        self.fixed: list[str] = []
        self.layers: list[tuple[str, str, int, str]] = []  # (module, node, units' dim, group) of Linear/Conv outputs
        self.merged: set[str] = set()  # groups made one because a tensor is reached more than once

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def label(self, value) -> _Label | None:
        return self.labels.get(value) if isinstance(value, fx.Node) else None

    def new_group(self, name: str, size: int) -> tuple[Segment, ...]:
        return (Segment(self.groups.new(name, size), size),)

    def axis(self, name: str, dim: int, segments) -> None:
        """One use's layout of one axis (segments of group None: this use leaves the axis as it is)."""
        self.axes.append((self.tied.get(name, name), dim, tuple(segments)))

    def still(self, name: str, tensor: torch.Tensor) -> None:
        """This use needs every axis of `tensor` left as it is."""
        for dim, n in enumerate(tensor.shape):
            self.axis(name, dim, (Segment(None, n),))

    def unknown(self, node: fx.Node, why: str) -> None:
        """Leave everything this op touches unpermuted, its module's own tensors included, and say so."""
        if node.op == "call_module":  # fx types Node.target for every op; a call_module's is the module's path
            for pname, tensor in self.gm.get_submodule(cast(str, node.target)).state_dict(keep_vars=True).items():
                self.still(f"{node.target}.{pname}", tensor)
        touched = False
        for arg in node.all_input_nodes:
            lab = self.label(arg)
            if lab is not None:
                touched = True
                for s in lab.segments:
                    if s.group is not None:
                        self.groups.fix(s.group)
        if touched:
            self.fixed.append(f"{node.name}: {why}")
        self.labels[node] = None

    def join(self, node: fx.Node, a: _Label, b: _Label) -> bool:
        """Tie the units of two activations added or multiplied elementwise; False where they do not line up."""
        if a.dim != b.dim or len(a.segments) != len(b.segments):
            return False
        for x, y in zip(a.segments, b.segments):
            if (x.size, x.repeat) != (y.size, y.repeat) or (x.group is None) != (y.group is None):
                return False
            if x.group is not None and y.group is not None and not self.groups.union(x.group, y.group):
                return False
        return True

    # --- the walk --------------------------------------------------------------------------------
    def run(self) -> PermutationSpec:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.labels[node] = None  # inputs never move
            elif node.op == "get_attr":
                self.labels[node] = None
                self.fixed.append(f"{node.target}: used directly in forward, not through a module")
                value = operator.attrgetter(node.target)(self.gm)
                if isinstance(value, torch.Tensor):
                    self.still(node.target, value)
            elif node.op == "call_module":
                self.module(node, self.gm.get_submodule(node.target))
            elif node.op in ("call_function", "call_method"):
                self.function(node)
            elif node.op == "output":
                for arg in node.all_input_nodes:  # outputs never move
                    lab = self.label(arg)
                    for s in (lab.segments if lab else ()):
                        if s.group is not None:
                            self.groups.fix(s.group)
        reused = self.merge_uses()
        return self.spec(reused)

    def merge_uses(self) -> list[str]:
        """Give each axis of a tensor reached more than once a single layout; returns those tensors' names.

        Uses that put groups on the same stretch of an axis make them one group; a use that leaves
        the stretch fixed, a union of groups of different sizes, or uses with different layouts of
        the axis fix every group involved, and the tensor is named in `fixed`.
        """
        uses: dict[tuple[str, int], list[tuple[Segment, ...]]] = {}
        for name, dim, segments in self.axes:
            uses.setdefault((name, dim), []).append(segments)
        reached: dict[str, int] = {}
        for (name, dim), layouts in uses.items():
            reached[name] = max(reached.get(name, 0), len(layouts))
            if len(layouts) == 1:
                continue
            groups = [s.group for lay in layouts for s in lay if s.group is not None]
            shapes = {tuple((s.size, s.repeat) for s in lay) for lay in layouts}
            safe = len(shapes) == 1
            if safe:
                for stretch in zip(*layouts):
                    here = [s.group for s in stretch]
                    if None in here:
                        safe = False
                    elif all(self.groups.union(here[0], other) for other in here[1:]):
                        self.merged.update(here)
                    else:
                        safe = False
            if not safe and groups:
                for group in groups:
                    self.groups.fix(group)
                self.fixed.append(f"{name}: reached {len(layouts)} times by the forward, and its uses do not agree "
                                  f"on how dimension {dim} may move")
        return sorted(name for name, n in reached.items() if n > 1)

    def spec(self, reused: list[str]) -> PermutationSpec:
        g = self.groups
        roots = {r for r in (g.find(x) for x in g.parent) if r not in g.fixed}
        axes, seen = [], set()
        for name, dim, segments in self.axes:
            resolved = tuple(Segment(g.find(s.group) if s.group is not None and g.find(s.group) in roots else None,
                                     s.size, s.repeat) for s in segments)
            if any(s.group is not None for s in resolved) and (name, dim) not in seen:
                seen.add((name, dim))  # merged uses agree: one axis per (tensor, dimension)
                axes.append(Axis(name, dim, resolved))
        last, by_use = {}, {}  # the last activation that carries exactly one group: per group, and per name it had
        for node, lab in self.labels.items():
            if lab is not None and len(lab.segments) == 1 and lab.segments[0].repeat == 1 \
                    and lab.segments[0].group is not None and g.find(lab.segments[0].group) in roots:
                last[g.find(lab.segments[0].group)] = (node.name, lab.dim)
                by_use[lab.segments[0].group] = (node.name, lab.dim)
        merged = {g.find(x) for x in self.merged}
        # a group merged from several uses shows its units in each of them: a unit dead in one still shows in another
        probes = {root: [p for name, p in by_use.items() if g.find(name) == root] if root in merged else [probe]
                  for root, probe in last.items()}
        layers = [(m, n, d) for m, n, d, group in self.layers if g.find(group) in roots]  # hidden layers only
        return PermutationSpec({r: g.size[r] for r in g.parent if r in roots}, axes, self.fixed, probes, layers,
                               dict(self.tied), reused)

    def module(self, node: fx.Node, mod: nn.Module) -> None:
        if nn.utils.parametrize.is_parametrized(mod):  # its weight is computed, not a tensor permute can move
            return self.unknown(node, f"{type(mod).__name__}: a parametrized layer (weight_norm, spectral_norm, ...) "
                                      "computes its weight, which a permutation cannot move")
        x = node.args[0] if node.args else None
        lab, shape, name = self.label(x), self.shape(x), node.target
        out_shape = self.shape(node)
        if isinstance(mod, nn.Linear):
            if lab is not None:
                assert shape is not None  # a labelled activation is a tensor, whose shape ShapeProp recorded
                if lab.dim != len(shape) - 1:
                    return self.unknown(node, "a Linear over a dimension other than the units'")
            assert out_shape is not None  # a Linear returns a tensor
            self.weight_layer(node, mod, lab, mod.out_features, len(out_shape) - 1)
        elif isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            if mod.groups != 1:
                return self.unknown(node, f"grouped convolution (groups={mod.groups})")
            if lab is not None and lab.dim != 1:
                return self.unknown(node, "a convolution whose channels are not the units' dimension")
            self.weight_layer(node, mod, lab, mod.out_channels, 1)
        elif isinstance(mod, nn.modules.batchnorm._BatchNorm) or (
                isinstance(mod, nn.GroupNorm) and mod.num_groups == mod.num_channels):
            if lab is not None and lab.dim != 1:
                return self.unknown(node, "a normalisation whose channels are not the units' dimension")
            for pname in ("weight", "bias", "running_mean", "running_var"):
                tensor = getattr(mod, pname, None)
                if tensor is not None:
                    if lab is None:
                        self.still(f"{name}.{pname}", tensor)
                    else:
                        self.axis(f"{name}.{pname}", 0, lab.segments)
            self.labels[node] = lab
        elif isinstance(mod, nn.LayerNorm):
            if lab is None:
                for pname in ("weight", "bias"):
                    if getattr(mod, pname, None) is not None:
                        self.still(f"{name}.{pname}", getattr(mod, pname))
                self.labels[node] = None
            else:
                assert shape is not None  # a labelled activation is a tensor, whose shape ShapeProp recorded
                if len(mod.normalized_shape) == 1 and lab.dim == len(shape) - 1:
                    for pname in ("weight", "bias"):
                        if getattr(mod, pname, None) is not None:
                            self.axis(f"{name}.{pname}", 0, lab.segments)
                    self.labels[node] = lab
                else:
                    self.unknown(node, "a LayerNorm over more than the units' dimension")
        elif isinstance(mod, ELEMENTWISE_MODULES):
            self.labels[node] = lab
        elif isinstance(mod, POOL_MODULES):
            self.pool(node, lab)
        elif isinstance(mod, nn.Flatten):
            self.flatten(node, lab, shape, out_shape, mod.start_dim, mod.end_dim)
        else:
            self.unknown(node, f"{type(mod).__name__} is not a layer the spec knows")

    def weight_layer(self, node: fx.Node, mod: nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d, lab: _Label | None,
                     units: int, dim: int) -> None:
        """A Linear or Conv: its input columns follow the incoming units, its rows make a new group."""
        name = cast(str, node.target)  # a call_module node: its target is the module's path (fx types any op's)
        self.axis(f"{name}.weight", 1, lab.segments if lab is not None else (Segment(None, mod.weight.shape[1]),))
        segs = self.new_group(name, units)
        self.axis(f"{name}.weight", 0, segs)
        if mod.bias is not None:
            self.axis(f"{name}.bias", 0, segs)
        self.labels[node] = _Label(dim, segs)
        assert segs[0].group is not None  # new_group's segment is the group it made
        self.layers.append((name, node.name, dim, segs[0].group))

    def pool(self, node: fx.Node, lab: _Label | None) -> None:
        if lab is not None and lab.dim != 1:
            return self.unknown(node, "pooling over the units' dimension")
        self.labels[node] = lab

    def flatten(self, node, lab, shape, out_shape, start=1, end=-1) -> None:
        if lab is None:
            self.labels[node] = None
            return
        start, end = start % len(shape), end % len(shape)
        if lab.dim < start or lab.dim > end:  # the units' dimension is untouched, perhaps moved
            self.labels[node] = _Label(lab.dim if lab.dim < start else lab.dim - (end - start), lab.segments)
        elif lab.dim == start:  # each unit becomes a block of the features that follow it
            block = math.prod(shape[start + 1:end + 1])
            self.labels[node] = _Label(start, tuple(Segment(s.group, s.size, s.repeat * block) for s in lab.segments))
        else:
            self.unknown(node, "a flatten that splits the units")

    def function(self, node: fx.Node) -> None:
        target, args = node.target, node.args
        lab = self.label(args[0]) if args else None
        meta = node.meta.get("tensor_meta")  # one TensorMetadata (itself a NamedTuple), or a tuple of them
        if isinstance(meta, (tuple, list)) and not isinstance(meta, TensorMetadata) and any(
                self.label(a) is not None for a in node.all_input_nodes):
            # chunk, split, unbind, sort, cummax...: where each piece's units go is not followed
            return self.unknown(node, f"{getattr(target, '__name__', target)} returns several tensors")
        if self.shape(node) is None:  # not a tensor (x.shape, x.size(0)): nothing moves
            self.labels[node] = None
        elif target in ELEMENTWISE_FUNCTIONS or target in ELEMENTWISE_METHODS:
            self.labels[node] = lab
        elif target in POOL_FUNCTIONS:
            self.pool(node, lab)
        elif target in JOINING:
            self.joining(node)
        elif target in FLATTENING:
            self.reshaping(node, lab)
        elif target in (torch.cat, torch.concat):
            self.concat(node)
        elif target in ("mean", "sum", "amax", torch.mean, torch.sum, torch.amax):
            self.reduce(node, lab)
        elif not any(self.label(a) is not None for a in node.all_input_nodes):
            self.labels[node] = None  # works on inputs or constants only
        else:
            self.unknown(node, f"{getattr(target, '__name__', target)} is not an op the spec knows")

    def joining(self, node: fx.Node) -> None:
        a, b = node.args[0], node.args[1] if len(node.args) > 1 else None
        la, lb = self.label(a), self.label(b)
        tensors = [v for v in (a, b) if isinstance(v, fx.Node) and self.shape(v) is not None]
        if len(tensors) < 2:  # with a Python number: nothing to tie
            self.labels[node] = la or lb
        elif la is not None and lb is not None and self.shape(a) == self.shape(b) and self.join(node, la, lb):
            self.labels[node] = _Label(la.dim, tuple(Segment(self.groups.find(s.group) if s.group else None, s.size,
                                                             s.repeat) for s in la.segments))
        elif la is None and lb is None:
            self.labels[node] = None
        else:
            self.unknown(node, "an elementwise op between activations whose units do not line up")

    def reshaping(self, node: fx.Node, lab: _Label | None) -> None:
        shape, out = self.shape(node.args[0]), self.shape(node)
        if lab is None or shape == out:
            self.labels[node] = lab
            return
        # a labelled input is a tensor, and function() sends only ops returning one: ShapeProp recorded both
        assert shape is not None and out is not None
        if node.target in (torch.flatten, "flatten"):
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            end = node.args[2] if len(node.args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, lab, shape, out, start, end)
        elif len(out) == lab.dim + 1 and out[:lab.dim] == shape[:lab.dim]:  # view(N, -1): everything after merges
            self.flatten(node, lab, shape, out, lab.dim, -1)
        else:
            self.unknown(node, f"a reshape from {shape} to {out}")

    def concat(self, node: fx.Node) -> None:
        # fx types every argument as any Argument; torch.cat's are a sequence of tensors and an int
        parts = cast(Sequence[fx.node.Argument], node.args[0])
        dim = cast(int, node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0))
        out = self.shape(node)
        assert out is not None  # function() sends only ops returning a tensor
        dim %= len(out)
        labels = [self.label(p) for p in parts]
        if all(lab is None for lab in labels):
            self.labels[node] = None
        elif all(lab is None or lab.dim == dim for lab in labels):  # side by side along the units
            segs = []
            for p, lab in zip(parts, labels):
                if lab is not None:
                    segs += list(lab.segments)
                else:
                    p_shape = self.shape(p)
                    assert p_shape is not None  # every piece torch.cat joins is a tensor
                    segs += [Segment(None, p_shape[dim])]
            self.labels[node] = _Label(dim, tuple(segs))
        else:
            self.unknown(node, "a concat across the units' dimension")

    def reduce(self, node: fx.Node, lab: _Label | None) -> None:
        if lab is None:
            self.labels[node] = None
            return
        shape = self.shape(node.args[0])
        assert shape is not None  # a labelled activation is a tensor, whose shape ShapeProp recorded
        ndim = len(shape)
        # fx types every argument as any Argument; a reduction's dim is an int, a sequence of them, or None
        dims = cast("int | Sequence[int] | None", node.args[1] if len(node.args) > 1 else node.kwargs.get("dim"))
        keep = node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False)
        dims = [d % ndim for d in ((dims,) if isinstance(dims, int) else (dims or range(ndim)))]
        if lab.dim in dims:
            return self.unknown(node, "a reduction over the units")
        self.labels[node] = _Label(lab.dim if keep else lab.dim - sum(d < lab.dim for d in dims), lab.segments)


def axis_index(axis: Axis, perms: dict[str, torch.Tensor], skip: int | None = None) -> torch.Tensor | None:
    """The index along `axis` that applies `perms` to its segments (segment `skip` left alone); None: identity."""
    pieces, offset, moved = [], 0, False
    for i, s in enumerate(axis.segments):
        n = s.size * s.repeat
        p = perms.get(s.group) if s.group is not None and i != skip else None
        if p is None:
            pieces.append(torch.arange(offset, offset + n, device="cpu"))
        else:
            moved = True
            p = p.to("cpu")
            pieces.append(offset + (p[:, None] * s.repeat + torch.arange(s.repeat, device="cpu")).reshape(-1))
        offset += n
    return torch.cat(pieces) if moved else None


def permute_state(state: dict[str, torch.Tensor], spec: PermutationSpec,
                  perms: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every axis of the spec permuted: new[units] = old[perm[units]]."""
    out = dict(state)
    for axis in spec.axes:
        index = axis_index(axis, perms)
        if index is not None:
            out[axis.name] = out[axis.name].index_select(axis.dim, index.to(out[axis.name].device))
    for alias, name in spec.tied.items():  # a tied tensor is one tensor: every name of it holds the permuted one
        if alias in out:
            out[alias] = out[name]
    return out


def permute(model: nn.Module, spec: PermutationSpec, perms: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of `model` with its units relabelled by `perms` (group -> index tensor): the same function."""
    for group, p in perms.items():
        if group not in spec.groups:
            raise ModeconnError(f"{group!r} is not a group of this spec; its groups are {', '.join(spec.groups)}")
        if sorted(p.tolist()) != list(range(spec.groups[group])):
            raise ModeconnError(f"the permutation of {group!r} is not a permutation of 0..{spec.groups[group] - 1}")
    out = copy.deepcopy(model)
    out.load_state_dict(permute_state(out.state_dict(), spec, perms))
    return out


def random_permutation(spec: PermutationSpec, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random permutation of every group (for tests and for checking function preservation)."""
    gen = torch.Generator().manual_seed(seed)
    return {g: torch.randperm(n, generator=gen, device="cpu") for g, n in spec.groups.items()}
