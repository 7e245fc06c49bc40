"""REPAIR (Jordan et al., ICLR 2023): give an interpolated network the activation statistics it should have.

Between two networks the hidden units' activation variance collapses. For every hidden Linear or
Conv layer (in graph order), REPAIR measures each unit's pre-activation mean and standard
deviation in the anchor networks, interpolates them with the point's coefficients, measures the
interpolated network, and folds a per-unit scale and shift into that layer's weight and bias, so
the result is a plain module. For networks with BatchNorm, recomputing BN statistics at every
point (what modeconn always does) is the "reset" form of the same correction; they need no REPAIR.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..core.families import FAMILIES
from ..core.flat import load_parameters_vector, parameters_vector
from ..errors import ModeconnError, param
from ..evaluation.batchnorm import has_batchnorm
from ..tasks import CLASSIFICATION, Task, check_task
from .matching import _Recorder
from .spec import permutation_spec, trace


@torch.no_grad()
def unit_stats(model: nn.Module, layers, inputs, example_input) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean and standard deviation of each unit at every (module, fx node, dim) of `layers`, over `inputs` (input
    batches)."""
    gm = trace(model.eval(), example_input)
    probes = {node: dim for _, node, dim in layers}
    sums: dict[str, list] = {}
    for x in inputs:
        rec = _Recorder(gm, probes)
        rec.run(x)
        for node, v in rec.seen.items():
            s = sums.setdefault(node, [0, 0.0, 0.0])
            s[0] += len(v)
            s[1], s[2] = s[1] + v.sum(0), s[2] + (v * v).sum(0)
    out = {}
    for _, node, _ in layers:
        n, s1, s2 = sums[node]
        mean = s1 / n
        out[node] = mean, (s2 / n - mean ** 2).clamp_min(0).sqrt()
    return out


def repairable_layers(model: nn.Module, example_input: torch.Tensor) -> list[tuple[str, str, int]]:
    """The hidden layers REPAIR corrects, refusing a network it does not apply to, with the reason."""
    if has_batchnorm(model):
        raise ModeconnError(f"{type(model).__name__} has BatchNorm, whose statistics are recomputed at every point "
                            f"(the 'reset' form of REPAIR): {param('repair')} is for networks without normalisation")
    spec = permutation_spec(model, example_input)
    layers = spec.layers
    for module_name, _, _ in layers:
        # REPAIR folds a unit's correction into its layer's weight, and one fold cannot serve two uses
        if f"{module_name}.weight" in spec.reused or f"{module_name}.weight" in spec.tied.values():
            raise ModeconnError(f"layer {module_name!r} is reached more than once by the forward (called twice or its "
                                "weight tied), and REPAIR's correction of one use would change the others")
    if not layers:
        raise ModeconnError(f"{type(model).__name__} has no hidden Linear or Conv layer for REPAIR to correct")
    for module_name, _, _ in layers:
        if model.get_submodule(module_name).bias is None:
            raise ModeconnError(f"REPAIR folds its shift into a bias, and layer {module_name!r} has none")
    return layers


class Repair:
    """REPAIR for the points between fixed anchors: the anchors' unit statistics are measured once,
    then each point is corrected on demand (`repair(model, coefficients)`)."""

    def __init__(self, anchors: list[nn.Module], batches, example_input=None, task: Task = CLASSIFICATION):
        self.inputs = [check_task(task).split(item)[0] for item in (batches or [])]
        if not self.inputs:
            raise ModeconnError("REPAIR measures unit statistics on training data: give it at least one batch")
        self.example = self.inputs[0][:2] if example_input is None else example_input
        self.layers = repairable_layers(anchors[0], self.example)
        self.anchor_stats = [unit_stats(a, self.layers, self.inputs, self.example) for a in anchors]

    @torch.no_grad()
    def __call__(self, model: nn.Module, coefficients) -> nn.Module:
        """A copy of `model` (sum_k c_k anchor_k in weight space) whose units have the interpolated statistics.

        Each hidden unit's pre-activation mean and std become sum_k c_k mean_k and sum_k c_k std_k.
        Layers are corrected in graph order, each measured after the ones before it were, so every
        unit ends at its target. Coefficients may be negative (a plane's points outside its
        triangle): the targets extrapolate affinely, and a target std below zero is clamped to zero,
        since a negative one would flip the unit's sign.
        """
        fixed = copy.deepcopy(model)
        for module_name, node, dim in self.layers:
            mean_t = sum(c * s[node][0] for c, s in zip(coefficients, self.anchor_stats))
            std_t = sum(c * s[node][1] for c, s in zip(coefficients, self.anchor_stats)).clamp_min(0)
            mean, std = unit_stats(fixed, [(module_name, node, dim)], self.inputs, self.example)[node]
            # a dead unit (zero variance) keeps its weights and gets the target mean
            scale = torch.where(std > 1e-8, std_t / std.clamp_min(1e-8), torch.ones_like(std))
            layer = fixed.get_submodule(module_name)
            # permutation_spec lists only these as layers, and repairable_layers refused any without a bias
            assert isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and layer.bias is not None
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            layer.weight.mul_(scale.view(shape).to(layer.weight.dtype))
            layer.bias.copy_(((layer.bias.double() - mean) * scale + mean_t).to(layer.bias.dtype))
        return fixed


def repair(model: nn.Module, anchors: list[nn.Module], coefficients, batches, example_input=None,
           task: Task = CLASSIFICATION) -> nn.Module:
    """A copy of `model` (sum_k coefficients[k] * anchors[k] in weight space) with REPAIR's statistics, measured
    on the inputs of `batches` (read by `task.split`)."""
    return Repair(anchors, batches, example_input, task)(model, coefficients)


def repaired_points(batches, task: Task = CLASSIFICATION):
    """For `eval_path`/`metrics_along`: given a path, the REPAIRed network at each t, its control points'
    statistics interpolated with the path's own coefficients (measured once per path)."""
    def along(path):
        fix = Repair([path.control_model(k) for k in range(path.num_points)], batches, task=task)
        return lambda t: fix(path.model_at(t), FAMILIES[path.kind](t, path.num_points))
    return along


def repaired_plane(basis, anchors_xy, anchors: list[nn.Module], batches, task: Task = CLASSIFICATION):
    """For `measure_points`: the REPAIRed weight vectors at plane coordinates, each point's statistics the
    barycentric combination of the three anchors' (measured once)."""
    fix = Repair(anchors, batches, task=task)
    work = copy.deepcopy(anchors[0])

    def points_at(coords) -> torch.Tensor:
        rows = []
        for w, coefficients in zip(basis.points(coords), basis.barycentric(coords, anchors_xy)):
            load_parameters_vector(work, w)
            rows.append(parameters_vector(fix(work, [float(c) for c in coefficients])))
        return torch.stack(rows)
    return points_at
