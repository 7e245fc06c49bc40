"""The permutation symmetries of a network, found by tracing it with torch.fx: no spec written by hand.

Hidden units can be relabelled without changing what a network computes, provided every tensor
that touches them is permuted alike: a layer's output rows, BatchNorm's statistics, the next
layer's input columns, both sides of a residual addition. `permutation_spec` follows each
activation through the traced graph and records, for every group of units that must move
together, each (tensor, dimension) it acts on. A flatten after a conv turns a channel into a
block of features, and a concat lays groups side by side, so an axis holds a list of segments.
Inputs and outputs never move; whatever the tracer cannot prove safe stays fixed and is named.

A model torch.fx cannot trace (a Hugging Face transformer: keyword-heavy forwards, branches on which inputs
were given) is captured with torch.export instead, as an ATen graph whose weights are read by the ops
themselves (addmm, linear, embedding, layer_norm, scaled_dot_product_attention). There a group of units can be
refined as the graph demands: split into consecutive groups where an activation is split (a fused query, key and
value projection), or into heads of whole blocks where it is reshaped into (heads, head size). Restricting a group
that way keeps the function, and attention needs it: the heads that attend together move together, with their
query, key and value rows and the output projection's columns. The units inside a head stay in place, and are
named in `fixed`.

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


def _product(values) -> int:
    return math.prod(values) if values else 1


@dataclass(frozen=True)
class _Label:
    """Which dimension of an activation carries units, and how they are laid out."""

    dim: int
    segments: tuple[Segment, ...]


def trace(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """The model as an fx graph with every node's shape, or a one-line error naming what cannot be traced."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as fx_error:  # fx raises several types; the message names the construct
        # torch.export captures what plain fx cannot (keyword arguments, branches on which inputs were given, as in
        # Hugging Face models) as an ATen graph; transformers' own fx tracer left with transformers 5
        try:
            with torch.no_grad():
                # the batch dimension left dynamic: activation matching runs the graph on whole batches
                gm = torch.export.export(model, (example_input,), dynamic_shapes=({0: torch.export.Dim.AUTO},),
                                         strict=False).module()
        except Exception as exc:
            raise ModeconnError(f"torch.fx and torch.export cannot trace {type(model).__name__} (fx: "
                                f"{str(fx_error).splitlines()[0][:100]}; export: {str(exc).splitlines()[0][:100]}); "
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
        # a group the graph split into consecutive groups or into heads: its root -> the segments it became
        self.refined: dict[str, tuple[Segment, ...]] = {}
        self.weights: dict[fx.Node, str] = {}  # get_attr nodes of tensors (an exported graph's weights) -> names
        self.read: set[tuple[fx.Node, fx.Node]] = set()  # (weight, op) pairs a rule recorded axes for
        self.pieces: dict[fx.Node, list[_Label | None]] = {}  # an ATen split's pieces, read by getitem

    # --- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def shape(node) -> tuple[int, ...] | None:
        meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def label(self, value) -> _Label | None:
        """The units an activation carries, their groups resolved (refined groups expanded)."""
        lab = self.labels.get(value) if isinstance(value, fx.Node) else None
        return None if lab is None else _Label(lab.dim, self.resolve(lab.segments))

    def resolve(self, segments) -> tuple[Segment, ...]:
        """Segments with each group named by its root, and a refined group expanded into what it became."""
        out: list[Segment] = []
        for s in segments:
            root = self.groups.find(s.group) if s.group is not None else None
            if root is not None and root in self.refined:
                out += [Segment(x.group, x.size, x.repeat * s.repeat) for x in self.resolve(self.refined[root])]
            else:
                out.append(Segment(root, s.size, s.repeat))
        return tuple(out)

    def refine(self, group: str, parts: list[tuple[int, int]], names: list[str]) -> None:
        """Restrict `group` to permutations that keep consecutive parts apart: (size, block) per part, each part a
        new group (named by `names`) of `size` units moving as blocks of `block` (a split: blocks of 1; heads: one
        part)."""
        root = self.groups.find(group)
        made = []
        for (size, block), name in zip(parts, names):
            part = self.groups.new(name, size)
            made.append(Segment(part, size, block))
            if root in self.groups.fixed:
                self.groups.fix(part)
        self.refined[root] = tuple(made)

    def fix_all(self, segments) -> None:
        for s in self.resolve(segments):
            if s.group is not None:
                self.groups.fix(s.group)

    def weight(self, node, user: fx.Node) -> str | None:
        """The name of the tensor a weight argument reads (an exported graph's get_attr), recorded as read by
        `user`'s rule; None for an activation."""
        if isinstance(node, fx.Node) and node in self.weights:
            self.read.add((node, user))
            return self.tied.get(self.weights[node], self.weights[node])  # a tied tensor by the name axes use
        return None

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
                self.fix_all(lab.segments)
        if touched:
            self.fixed.append(f"{node.name}: {why}")
        self.labels[node] = None

    def join(self, node: fx.Node, a: _Label, b: _Label) -> bool:
        """Tie the units of two activations added or multiplied elementwise; False where they do not line up."""
        a, b = _Label(a.dim, self.resolve(a.segments)), _Label(b.dim, self.resolve(b.segments))
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
                if isinstance(operator.attrgetter(node.target)(self.gm), torch.Tensor):
                    self.weights[node] = node.target  # its axes are recorded by the ops that read it
            elif node.op == "call_module":
                self.module(node, self.gm.get_submodule(node.target))
            elif node.op in ("call_function", "call_method"):
                self.function(node)
            elif node.op == "output":
                for arg in node.all_input_nodes:  # outputs never move
                    lab = self.label(arg)
                    self.fix_all(lab.segments if lab else ())
        for weight, name in self.weights.items():  # read by an op no rule follows: it stays as it is
            others = [user for user in weight.users if (weight, user) not in self.read]
            tensor = operator.attrgetter(name)(self.gm)
            if others:
                self.still(name, tensor)
                if tensor.is_floating_point():  # integer buffers (position ids) are indices: they never move anyway
                    self.fixed.append(f"{name}: used directly in forward by {others[0].target}, which the spec "
                                      "does not follow")
        reused = self.merge_uses()
        return self.spec(reused)

    def merge_uses(self) -> list[str]:
        """Give each axis of a tensor reached more than once a single layout; returns those tensors' names.

        Uses that put groups on the same stretch of an axis make them one group; a use that leaves
        the stretch fixed, a union of groups of different sizes, or uses with different layouts of
        the axis fix every group involved, and the tensor is named in `fixed`.
        """
        uses: dict[tuple[str, int], list[tuple[Segment, ...]]] = {}
        for name, dim, segments in self.axes:  # a group fixed by now is no layout: it stays as it is anyway
            resolved = tuple(Segment(None if s.group in self.groups.fixed else s.group, s.size, s.repeat)
                             for s in self.resolve(segments))
            uses.setdefault((name, dim), []).append(resolved)
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
        roots = {r for r in (g.find(x) for x in g.parent) if r not in g.fixed and r not in self.refined}
        axes, seen = [], set()
        for name, dim, segments in self.axes:
            resolved = tuple(Segment(s.group if s.group in roots else None, s.size, s.repeat)
                             for s in self.resolve(segments))
            if any(s.group is not None for s in resolved) and (name, dim) not in seen:
                seen.add((name, dim))  # merged uses agree: one axis per (tensor, dimension)
                axes.append(Axis(name, dim, resolved))
        # the last activation that carries exactly one group: per group, and per name it had
        last: dict[str, tuple[str, int]] = {}
        by_use: dict[str, tuple[str, int]] = {}
        for node, raw in self.labels.items():
            lab = self.label(node)
            if lab is not None and raw is not None and len(lab.segments) == 1 and lab.segments[0].repeat == 1 \
                    and lab.segments[0].group in roots:
                last[lab.segments[0].group] = (node.name, lab.dim)
                first = raw.segments[0].group
                own = len(raw.segments) == 1 and first is not None and g.find(first) not in self.refined
                by_use[first if own and first is not None else lab.segments[0].group] = (node.name, lab.dim)
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
        if isinstance(target, torch._ops.OpOverload):  # an exported graph's ATen op
            return self.aten(node, target._opname)
        if target is operator.getitem and args and args[0] in self.pieces:  # a piece of an ATen split
            pieces = self.pieces[cast(fx.Node, args[0])]
            self.labels[node] = pieces[cast(int, args[1])]
            return None
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
        out = self.shape(node)
        if len(tensors) < 2:  # with a Python number: nothing to tie
            self.labels[node] = la or lb
        elif la is None and lb is None:
            self.labels[node] = None
        elif out is not None and la is not None and lb is not None \
                and la.dim - len(self.shape(a) or ()) == lb.dim - len(self.shape(b) or ()) and self.join(node, la, lb):
            # the units on the same dimension counted from the right, as broadcasting lines dimensions up
            self.labels[node] = _Label(len(out) - len(self.shape(a) or ()) + la.dim, self.resolve(la.segments))
        elif out is not None and (la is None) != (lb is None) and self._broadcast_over_units(
                cast(fx.Node, a if la is not None else b), cast(fx.Node, b if la is not None else a)):
            lab = cast(_Label, la or lb)  # one side is labelled: the other is the same for every unit
            labelled = a if la is not None else b
            self.labels[node] = _Label(len(out) - len(self.shape(labelled) or ()) + lab.dim, lab.segments)
        else:
            self.unknown(node, "an elementwise op between activations whose units do not line up")

    def _broadcast_over_units(self, labelled: fx.Node, other: fx.Node) -> bool:
        """Whether `other` is the same for every unit of `labelled` (size 1, or absent, on the units' dimension)."""
        lab, shape, theirs = self.label(labelled), self.shape(labelled), self.shape(other)
        if lab is None or shape is None or theirs is None:
            return False
        from_right = len(shape) - lab.dim
        return from_right > len(theirs) or theirs[len(theirs) - from_right] == 1

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


    # --- ATen ops (graphs torch.export captured) -------------------------------------------------
    def aten(self, node: fx.Node, op: str) -> None:
        args = node.args
        lab = self.label(args[0]) if args else None
        if op in ATEN_UNARY:
            self.labels[node] = lab if self.shape(node) is not None else None
        elif op in ATEN_JOINING:
            self.joining(node)
        elif op == "embedding":  # (weight (vocabulary, units), indices): a row per token, its units a new group
            self.embedding(node)
        elif op in ("addmm", "linear"):
            self.aten_linear(node, op)
        elif op == "layer_norm":
            self.aten_layer_norm(node)
        elif op in ("view", "reshape", "_unsafe_view"):
            self.view(node, lab)
        elif op == "transpose":
            ndim = len(self.shape(node) or (0,))
            one, two = cast(int, args[1]) % ndim, cast(int, args[2]) % ndim
            self.move_dims(node, lab, lambda d: {one: two, two: one}.get(d, d))
        elif op == "permute":
            dims = cast(Sequence[int], args[1])
            order = [d % len(dims) for d in dims]
            self.move_dims(node, lab, order.index)
        elif op == "unsqueeze":
            at = cast(int, args[1]) % (len(self.shape(node) or ()) or 1)
            self.move_dims(node, lab, lambda d: d + (d >= at))
        elif op in ("select", "slice"):
            self.select(node, lab, op)
        elif op == "expand":
            self.move_dims(node, lab, lambda d: d + len(self.shape(node) or ()) - len(self.shape(args[0]) or ()))
        elif op in ("split", "split_with_sizes"):
            self.split(node, lab)
        elif op == "scaled_dot_product_attention":
            self.attention(node)
        elif op in ("mean", "sum", "amax"):
            self.reduce(node, lab)
        elif op == "cat":
            self.concat(node)
        elif self.shape(node) is None and not isinstance(node.meta.get("tensor_meta"), (tuple, list)):
            self.labels[node] = None  # a check (_assert_tensor_metadata) or a number: nothing moves
        elif not any(self.label(a) is not None for a in node.all_input_nodes):
            self.labels[node] = None  # works on inputs, constants or weights only (a weight read here stays still)
        else:
            self.unknown(node, f"aten.{op} is not an op the spec knows")

    def embedding(self, node: fx.Node) -> None:
        name = self.weight(node.args[0], node)
        shape = self.shape(node.args[0])
        if name is None or shape is None or len(shape) != 2:
            return self.unknown(node, "an embedding whose table is not a weight")
        self.axis(name, 0, (Segment(None, shape[0]),))  # the vocabulary: token ids are inputs, they never move
        segs = self.new_group(name.removesuffix(".weight"), shape[1])
        self.axis(name, 1, segs)
        self.labels[node] = _Label(len(self.shape(node) or ()) - 1, segs)

    def aten_linear(self, node: fx.Node, op: str) -> None:
        """addmm(bias, x, weight (in, out)), as transformers' Conv1D stores it, or linear(x, weight (out, in),
        bias): the input columns follow the incoming units, the output rows make a new group."""
        if op == "addmm":
            bias, x, w = node.args[0], node.args[1], node.args[2]
            w_in, w_out = 0, 1
        else:
            x, w = node.args[0], node.args[1]
            bias = node.args[2] if len(node.args) > 2 else None
            w_in, w_out = 1, 0
        name, w_shape, x_shape = self.weight(w, node), self.shape(w), self.shape(x)
        bias_name = self.weight(bias, node) if bias is not None else None
        lab = self.label(x)
        if name is None or w_shape is None or x_shape is None or (bias is not None and bias_name is None) \
                or (lab is not None and lab.dim != len(x_shape) - 1) or len(node.kwargs):
            return self.unknown(node, f"aten.{op} with an activation as its weight, or over other than the units")
        self.axis(name, w_in, lab.segments if lab is not None else (Segment(None, w_shape[w_in]),))
        segs = self.new_group(name.removesuffix(".weight"), w_shape[w_out])
        self.axis(name, w_out, segs)
        if bias_name is not None:
            self.axis(bias_name, 0, segs)
        self.labels[node] = _Label(len(x_shape) - 1, segs)

    def aten_layer_norm(self, node: fx.Node) -> None:
        x, normalized = node.args[0], cast(Sequence[int], node.args[1])
        lab, shape = self.label(x), self.shape(x)
        params = [self.weight(a, node) for a in node.args[2:4] if isinstance(a, fx.Node)]
        if lab is None:
            for name in params:
                if name is not None:
                    self.still(name, operator.attrgetter(name)(self.gm))
            self.labels[node] = None
        elif shape is not None and len(normalized) == 1 and lab.dim == len(shape) - 1 and None not in params:
            for name in params:
                assert name is not None  # checked just above
                self.axis(name, 0, lab.segments)
            self.labels[node] = lab
        else:
            self.unknown(node, "a layer_norm over more than the units' dimension")

    def move_dims(self, node: fx.Node, lab: _Label | None, where) -> None:
        """An op that only moves dimensions: the units' dimension goes where `where` sends it."""
        self.labels[node] = None if lab is None else _Label(where(lab.dim), lab.segments)

    def select(self, node: fx.Node, lab: _Label | None, op: str) -> None:
        if lab is None:
            self.labels[node] = None
            return
        shape = self.shape(node.args[0])
        assert shape is not None  # a labelled activation is a tensor
        dim = cast(int, node.args[1]) % len(shape)
        if dim == lab.dim:
            return self.unknown(node, f"aten.{op} of some of the units")
        self.labels[node] = _Label(lab.dim - (op == "select" and dim < lab.dim), lab.segments)

    def view(self, node: fx.Node, lab: _Label | None) -> None:
        """A reshape: the units keep their own dimension, are split into (heads, head size), or merge with the
        dimensions after them (as a flatten)."""
        shape, out = self.shape(node.args[0]), self.shape(node)
        if lab is None or shape == out:
            self.labels[node] = lab
            return
        assert shape is not None and out is not None  # a labelled activation is a tensor
        units, before, after = shape[lab.dim], _product(shape[:lab.dim]), _product(shape[lab.dim + 1:])
        for i in range(len(out)):
            if _product(out[:i]) != before:
                continue
            if out[i] == units and _product(out[i + 1:]) == after:  # the units keep a dimension of their own
                self.labels[node] = _Label(i, lab.segments)
                return
            if i + 1 < len(out) and out[i] * out[i + 1] == units and _product(out[i + 2:]) == after and out[i] > 1:
                return self.heads(node, lab, i, out[i + 1])
            for end in range(lab.dim + 1, len(shape) + 1):  # the units and the dimensions after them merge
                if out[i] == units * _product(shape[lab.dim + 1:end]) and _product(out[i + 1:]) == \
                        _product(shape[end:]):
                    self.flatten(node, lab, shape, out, lab.dim, end - 1)
                    return
        self.unknown(node, f"a reshape from {shape} to {out}")

    def heads(self, node: fx.Node, lab: _Label, dim: int, size: int) -> None:
        """The units split into (heads, `size`): every group moves in whole heads from here on; the units inside a
        head stay in place (named in `fixed`)."""
        segments = []
        for s in lab.segments:
            if s.repeat % size == 0:  # already in blocks of a head (or more)
                segments.append(Segment(s.group, s.size, s.repeat // size))
            elif s.repeat == 1 and s.size % size == 0 and s.group is not None:
                self.refine(s.group, [(s.size // size, size)], [f"{s.group}.heads"])
                self.fixed.append(f"{s.group}: the {size} units inside each of its {s.size // size} heads stay in "
                                  "place (heads move as whole blocks)")
                head = self.resolve((s,))[0]
                segments.append(Segment(head.group, head.size, 1))
            elif s.group is None and s.size * s.repeat % size == 0:
                segments.append(Segment(None, s.size * s.repeat // size))
            else:
                return self.unknown(node, f"a reshape into heads of {size} across groups of other sizes")
        self.labels[node] = _Label(dim, tuple(segments))

    def split(self, node: fx.Node, lab: _Label | None) -> None:
        """split(x, sizes, dim): each piece keeps the units it holds; a group cut by the split becomes one group per
        piece (the query, key and value of a fused projection)."""
        shape = self.shape(node.args[0])
        pieces = node.meta.get("tensor_meta")
        if lab is None or shape is None or not isinstance(pieces, (tuple, list)):
            self.labels[node] = None
            self.pieces[node] = [None] * (len(pieces) if isinstance(pieces, (tuple, list)) else 0)
            return
        dim = cast(int, node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % len(shape)
        if dim != lab.dim:
            self.labels[node] = None
            self.pieces[node] = [lab] * len(pieces)
            return
        cuts = [int(p.shape[dim]) for p in pieces]
        bounds = [sum(cuts[:i]) for i in range(len(cuts) + 1)]
        segments, offset = lab.segments, 0
        for s in segments:  # refine each fresh group a boundary falls inside
            inner = [b - offset for b in bounds if offset < b < offset + s.size * s.repeat]
            if inner and (s.repeat != 1 or s.group is None):
                return self.unknown(node, "a split inside a block of units")
            if inner and s.group is not None:
                marks = [0, *inner, s.size]
                self.refine(s.group, [(hi - lo, 1) for lo, hi in zip(marks, marks[1:])],
                            [f"{s.group}[{lo}:{hi}]" for lo, hi in zip(marks, marks[1:])])
            offset += s.size * s.repeat
        resolved, offset, k = self.resolve(segments), 0, 0
        out: list[_Label | None] = []
        for hi in bounds[1:]:
            part = []
            while k < len(resolved) and offset < hi:
                part.append(resolved[k])
                offset += resolved[k].size * resolved[k].repeat
                k += 1
            out.append(_Label(dim, tuple(part)))
        self.labels[node] = None
        self.pieces[node] = out

    def attention(self, node: fx.Node) -> None:
        """scaled_dot_product_attention(q, k, v, mask, ...) on (batch, heads, length, head size): the heads of the
        query, key and value move together, and the output's heads with them."""
        q, k, v = (self.label(a) for a in node.args[:3])
        labelled = [lab for lab in (q, k, v) if lab is not None]
        if not labelled:
            self.labels[node] = None
        elif len(labelled) == 3 and all(lab.dim == 1 and len(lab.segments) == 1 for lab in labelled) \
                and self.join(node, q, k) and self.join(node, q, v):  # type: ignore[arg-type]
            self.labels[node] = self.label(node.args[0])
        else:
            self.unknown(node, "attention whose query, key and value are not split into the same heads")


ATEN_UNARY = {"dropout", "gelu", "relu", "silu", "tanh", "sigmoid", "pow", "alias", "clone", "contiguous", "to",
              "_to_copy", "neg", "detach", "native_dropout", "erf", "exp", "abs", "mish", "hardtanh", "leaky_relu"}
ATEN_JOINING = {"add", "sub", "mul", "div"}


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
