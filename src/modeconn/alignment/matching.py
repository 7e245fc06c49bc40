"""Aligning network b to network a: weight matching (Git Re-Basin) and activation matching (Tatro et al.).

Both choose, for every group of units in the permutation spec, the relabelling of b's units
that best matches a's, by solving linear assignment problems (scipy's linear_sum_assignment).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
import torch.fx as fx
from scipy.optimize import linear_sum_assignment
from torch import nn

from ..core.flat import check_same_architecture
from ..errors import ModeconnError
from ..tasks import CLASSIFICATION, Task, check_task
from .spec import PermutationSpec, axis_index, permutation_spec, permute, trace

METHODS = ("weights", "activations")


@dataclass
class AlignInfo:
    """How an alignment went: the objective before and after, per pass, and what was permuted or left fixed."""

    method: str
    objective_before: float
    objective_after: float
    objectives: list[float]
    passes: int
    groups: dict[str, int]
    fixed: list[str]
    seconds: float
    permutation: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # group -> index applied to b

    def to_dict(self) -> dict:
        """Everything but the permutation itself (that goes to permutation.safetensors)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "permutation"}


def _permuted_except(tensor: torch.Tensor, axes, perms, skip=None) -> torch.Tensor:
    """`tensor` with every (axis, segment) of it permuted, except the pair `skip`."""
    for k, axis in enumerate(axes):
        index = axis_index(axis, perms, skip=skip[1] if skip is not None and skip[0] == k else None)
        if index is not None:
            tensor = tensor.index_select(axis.dim, index.to(tensor.device))
    return tensor


def _segment_rows(tensor: torch.Tensor, axis, seg: int) -> torch.Tensor:
    """The rows of one segment along the axis, one row per unit: (units, everything else)."""
    offset = sum(s.size * s.repeat for s in axis.segments[:seg])
    s = axis.segments[seg]
    return tensor.movedim(axis.dim, 0)[offset:offset + s.size * s.repeat].reshape(s.size, -1)


class _WeightObjective:
    """sum over permuted tensors of <A, perm(B)>, and the per-group similarity matrices of Git Re-Basin.

    Tensors stay in float32 (the matmuls dominate); sums are taken in float64.
    """

    def __init__(self, spec: PermutationSpec, a: dict, b: dict):
        self.spec = spec
        self.a = {n: a[n].detach().float() for n in spec.tensors()}
        self.b = {n: b[n].detach().float() for n in spec.tensors()}
        self.axes = {n: [ax for ax in spec.axes if ax.name == n] for n in spec.tensors()}

    def value(self, perms, names=None) -> float:
        return float(sum((self.a[n] * _permuted_except(self.b[n], self.axes[n], perms)).sum(dtype=torch.float64)
                         for n in (names or self.a)))

    def similarity(self, group: str, perms) -> torch.Tensor:
        """C[i, j]: how well b's unit j matches a's unit i, the other groups held at `perms`."""
        n = self.spec.groups[group]
        c = torch.zeros(n, n, dtype=torch.float64, device="cpu")
        for name, axes in self.axes.items():
            for k, axis in enumerate(axes):
                for seg, s in enumerate(axis.segments):
                    if s.group == group:
                        b = _permuted_except(self.b[name], axes, perms, skip=(k, seg))
                        c += (_segment_rows(self.a[name], axis, seg) @ _segment_rows(b, axis, seg).T).double()
        return c


def weight_matching(spec: PermutationSpec, state_a: dict, state_b: dict, seed: int = 0,
                    max_passes: int = 100) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Coordinate descent over groups in random order, one assignment per group, until a pass gains nothing.

    A new assignment is kept only if the whole objective rises, so the objective per pass never
    decreases. Where a group acts once per tensor the objective is linear in its permutation and
    the similarity matrix gives the gain exactly; elsewhere (a tensor touched twice by one group)
    the objective is recomputed. Returns the permutations and the objective before and after each pass.
    """
    objective = _WeightObjective(spec, state_a, state_b)
    perms = {g: torch.arange(n, device="cpu") for g, n in spec.groups.items()}
    touching = {g: [ax.name for ax, _ in spec.axes_of(g)] for g in spec.groups}
    linear = {g: len(set(names)) == len(names) for g, names in touching.items()}
    history = [objective.value(perms)]
    rng = np.random.default_rng(seed)
    for _ in range(max_passes):
        changed, start = False, perms
        for group in rng.permutation(list(spec.groups)):
            c = objective.similarity(group, perms)
            rows, cols = linear_sum_assignment(c.numpy(), maximize=True)
            candidate = torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long, device="cpu")
            if torch.equal(candidate, perms[group]):
                continue
            trial = {**perms, group: candidate}
            units = torch.arange(len(candidate), device="cpu")
            if linear[group]:
                gain = float(c[units, candidate].sum() - c[units, perms[group]].sum())
            else:
                names = sorted(set(touching[group]))
                gain = objective.value(trial, names) - objective.value(perms, names)
            if gain > 1e-7 * max(1.0, abs(history[-1])):
                perms, changed = trial, True
        value = objective.value(perms)
        if value < history[-1]:  # gains below float32 rounding added up to a loss: keep the last pass
            perms, value, changed = start, history[-1], False
        history.append(value)
        if not changed:
            break
    return perms, history


class _Recorder(fx.Interpreter):
    """Runs a traced network and keeps the outputs of the probe nodes."""

    def __init__(self, gm: fx.GraphModule, probes: dict[str, int]):
        super().__init__(gm)
        self.probes = probes
        self.seen: dict[str, torch.Tensor] = {}

    def run_node(self, node):
        out = super().run_node(node)
        if node.name in self.probes:
            dim = self.probes[node.name]
            self.seen[node.name] = out.detach().movedim(dim, -1).reshape(-1, out.shape[dim]).double()
        return out


def _correlation(n, sa, sb, saa, sbb, sab) -> torch.Tensor:
    """Pearson correlation of a's unit i with b's unit j, from sums over n examples."""
    mean_a, mean_b = sa / n, sb / n
    cov = sab / n - mean_a[:, None] * mean_b[None, :]
    std_a = (saa / n - mean_a ** 2).clamp_min(0).sqrt()
    std_b = (sbb / n - mean_b ** 2).clamp_min(0).sqrt()
    return cov / (std_a[:, None] * std_b[None, :] + 1e-12)  # dead units (zero variance) correlate with nothing


def activation_matching(spec: PermutationSpec, model_a: nn.Module, model_b: nn.Module, inputs,
                        example_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """Match each group's units by the correlation of their activations on `inputs` (an iterable of input
    batches; b's unit j to a's unit i)."""
    probes = {node: dim for shown in spec.probes.values() for node, dim in shown}
    ga, gb = trace(model_a.eval(), example_input), trace(model_b.eval(), example_input)
    stats: dict[str, list] = {}
    with torch.no_grad():
        for x in inputs:
            ra, rb = _Recorder(ga, probes), _Recorder(gb, probes)
            ra.run(x)
            rb.run(x)
            for node in probes:
                a, b = ra.seen[node], rb.seen[node]
                s = stats.setdefault(node, [0, 0.0, 0.0, 0.0, 0.0, 0.0])
                s[0] += len(a)
                s[1], s[2] = s[1] + a.sum(0), s[2] + b.sum(0)
                s[3], s[4] = s[3] + (a * a).sum(0), s[4] + (b * b).sum(0)
                s[5] = s[5] + a.T @ b
    perms = {}
    for group, shown in spec.probes.items():
        corr = sum(_correlation(*stats[node]) for node, _ in shown)  # a group seen in several places: summed
        assert isinstance(corr, torch.Tensor)  # permutation_spec shows each probed group at least once
        rows, cols = linear_sum_assignment(corr.cpu().numpy(), maximize=True)
        perms[group] = torch.as_tensor(cols[np.argsort(rows)], dtype=torch.long, device="cpu")
    for group, size in spec.groups.items():  # a group no activation shows stays as it is
        perms.setdefault(group, torch.arange(size, device="cpu"))
    return perms


def align(model_a: nn.Module, model_b: nn.Module, method: str = "weights", batches=None,
          example_input: torch.Tensor | None = None, seed: int = 0, task: Task = CLASSIFICATION
          ) -> tuple[nn.Module, AlignInfo]:
    """b permuted into a's labelling (the same function as b), and how the alignment went.

    `example_input` (or the first of `batches`) is what the networks are traced with; activation
    matching needs `batches` of training data, read by `task.split` (only their inputs are used).
    """
    check_task(task)
    if method not in METHODS:
        raise ModeconnError(f"unknown alignment method {method!r}: choose one of {', '.join(METHODS)}")
    check_same_architecture(model_a.state_dict(), model_b.state_dict(), what=("a", "b"))
    if method == "activations" and batches is None:
        raise ModeconnError("activation matching needs training batches to measure activations on")
    if example_input is None:
        if batches is None:
            raise ModeconnError("align traces the networks with torch.fx and needs an example input: pass "
                                "example_input= (a couple of real inputs, e.g. data.test_x[:2]) or batches=")
        first = next(iter(batches), None)
        if first is None:
            raise ModeconnError("align was given no batches: pass training batches (or example_input=)")
        example_input = task.split(first)[0][:2]
    began = time.time()
    spec = permutation_spec(model_a, example_input)
    if not spec.groups:
        raise ModeconnError(f"{type(model_a).__name__} has no permutable hidden units "
                            f"({'; '.join(spec.fixed) or 'no hidden layers'})")
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    if method == "weights":
        perms, history = weight_matching(spec, state_a, state_b, seed)
    else:
        perms = activation_matching(spec, model_a, model_b, (task.split(item)[0] for item in batches),
                                    example_input)
        objective = _WeightObjective(spec, state_a, state_b)
        history = [objective.value({g: torch.arange(n, device="cpu") for g, n in spec.groups.items()}),
                   objective.value(perms)]
    aligned = permute(model_b, spec, perms)
    info = AlignInfo(method, history[0], history[-1], history, len(history) - 1, dict(spec.groups), spec.fixed,
                     round(time.time() - began, 3), perms)
    return aligned, info
