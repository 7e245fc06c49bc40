"""BatchNorm recomputation: the running statistics a network's BN layers should hold for given weights.

A point of a curve, simplex or plane is a new network whose BN statistics nobody computed: they are
recomputed from training data before it is measured (Garipov et al. 2018 do the same with their
`bn_update`; so does `torch.optim.swa_utils.update_bn`). What is computed here, exactly:

- every BN layer's `running_mean` and `running_var` become the mean and the unbiased variance of its input,
  per channel, over every example (and, for images, every position) the batches hold: each example weighs
  the same whatever the size of its batch;
- each layer's input is what training would give it: the network runs in eval mode except its BN layers,
  which normalise each batch by that batch's statistics; dropout and any other train-time behaviour stay off;
- a batch of one example joins the batch before it (a layer cannot normalise one example by its own
  statistics: BatchNorm1d refuses, and the example would be squashed to the layer's bias);
- batches are used in the order given; `Dataset.bn_batches` gives every caller the same seeded random order,
  never the file order (on class-sorted files each batch would hold one class, and the upstream layers'
  per-batch normalisation would bias the statistics of the layers after them).

The global random state is untouched, no tensor is read back to the host, and two recomputations of the same
weights over the same batches are bitwise equal. On shuffled batches of equal size the result matches the
paper's `bn_update` up to the sampling noise between its two variance estimates (the mean of per-batch
variances against the pooled variance): tests/test_batchnorm.py measures it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ModeconnError
from ..runtime.speed import EAGER, Speed
from ..tasks import CLASSIFICATION, Task, check_task


def batchnorm_layers(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers that track running statistics."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the module has BatchNorm layers that track running statistics."""
    return bool(batchnorm_layers(module))


def batchnorm_note(module: nn.Module) -> str:
    """What a result file says of BatchNorm: recomputed at every point it measured, or `none` to recompute."""
    return "statistics recomputed at every point" if has_batchnorm(module) else "none"


def batch_inputs(batches: Iterable, task: Task = CLASSIFICATION) -> Iterator[torch.Tensor]:
    """The inputs of `batches` (read by `task.split`), a batch of one example joined to its neighbour.

    Raises ModeconnError for a batch the task cannot read, and for fewer than two examples in all.
    """
    held: torch.Tensor | None = None
    for item in batches:
        x = task.split(item)[0]
        if held is not None and (len(x) < 2 or len(held) < 2):
            held = torch.cat([held, x])
            continue
        if held is not None:
            yield held
        held = x
    if held is None or len(held) < 2:
        raise ModeconnError("BatchNorm statistics need at least 2 examples; pass more training examples")
    yield held


class Moments:
    """Per-channel count, mean and sum of squared deviations of every BN layer's input, merged batch by batch
    (Chan et al.'s pairwise update, in float64, on the data's device: no host read-back).

    `mean` and `m2` of a layer have shape (C,), or (m, C) for m networks measured at once under vmap.
    """

    def __init__(self, layers: int):
        self.count = [0] * layers
        self.mean: list[torch.Tensor | None] = [None] * layers
        self.m2: list[torch.Tensor | None] = [None] * layers

    def add(self, i: int, n: int, mean: torch.Tensor, var: torch.Tensor) -> None:
        """Merge a batch of `n` values per channel, with per-channel `mean` and unbiased `var`, into layer i."""
        mean, m2 = mean.to(torch.float64, copy=True), var.to(torch.float64, copy=True) * (n - 1)
        before, before_m2, seen = self.mean[i], self.m2[i], self.count[i]
        if before is None or before_m2 is None:
            self.count[i], self.mean[i], self.m2[i] = n, mean, m2
            return
        total = seen + n
        delta = mean - before
        self.mean[i] = before + delta * (n / total)
        self.m2[i] = before_m2 + m2 + delta.square() * (seen * n / total)
        self.count[i] = total

    def statistics(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer i's (mean, unbiased variance): BatchNorm's running_var is unbiased too."""
        mean, m2 = self.mean[i], self.m2[i]
        assert mean is not None and m2 is not None, "a BN layer that no batch reached"
        return mean, m2 / max(self.count[i] - 1, 1)


class _BatchNormPass:
    """The model in recomputation mode: eval except the BN layers, whose momentum is 1, so that after each call
    a layer's running_mean and running_var hold that batch's mean and unbiased variance (BatchNorm computes them
    anyway: reading them back costs no extra pass over the activations); a forward hook on each layer hands
    them to `on_batch(i, n, layer)` (n values per channel). Restores modes and momenta on exit."""

    def __init__(self, model: nn.Module, layers: list[_BatchNorm], on_batch):
        self.model, self.layers, self.on_batch = model, layers, on_batch

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.momenta = [(m, m.momentum) for m in self.layers]
        self.model.eval()
        self.hooks = []
        for i, m in enumerate(self.layers):
            m.train()
            m.momentum = 1.0
            self.hooks.append(m.register_forward_hook(
                lambda mod, args, out, i=i: self.on_batch(i, args[0].numel() // args[0].shape[1], mod)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.hooks:
            h.remove()
        for m, momentum in self.momenta:
            m.momentum = momentum
        for module, training in self.modes:
            module.training = training


def _batch_statistics(layer: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The (mean, unbiased variance) of the batch a layer has just normalised, held in its running buffers
    while its momentum is 1."""
    assert layer.running_mean is not None and layer.running_var is not None  # layers that track running stats
    return layer.running_mean, layer.running_var


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable, speed: Speed = EAGER, task: Task = CLASSIFICATION) -> bool:
    """Recompute the running statistics of `model`'s BN layers, in place, from `batches`.

    batches: what `task.split` reads ((x, y, ...) tuples or lists by default), x of shape (N, *input_shape); used
    in the order given (pass
    `Dataset.bn_batches(...)` for the seeded random order every analysis uses). Each layer's running_mean and
    running_var become the per-channel mean and unbiased variance of its input over all the examples; see this
    module's docstring for exactly what is computed. num_batches_tracked counts the batches passed. The
    model's train/eval mode and the layers' momenta are restored.

    Returns False, doing no pass, for a network without BatchNorm. Raises ModeconnError for fewer than two
    examples or a batch the task cannot read.
    """
    check_task(task)
    layers = batchnorm_layers(model)
    if not layers:
        return False
    moments = Moments(len(layers))

    def collect(i: int, n: int, layer: _BatchNorm) -> None:
        moments.add(i, n, *_batch_statistics(layer))

    for m in layers:
        m.reset_running_stats()
    device = next(model.parameters()).device
    with _BatchNormPass(model, layers, collect), speed.autocast(device):
        for x in batch_inputs(batches, task):
            model(speed.input(x))
    for i, m in enumerate(layers):
        mean, var = moments.statistics(i)
        assert m.running_mean is not None and m.running_var is not None  # layers that track running stats
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
    return True


@torch.no_grad()
def recompute_bn_vmapped(net: nn.Module, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                         shared: dict[str, torch.Tensor], batches: Iterable, speed: Speed = EAGER,
                         task: Task = CLASSIFICATION) -> bool:
    """`recompute_bn` for m networks at once under `torch.func.vmap`: `net` is the template, `params` and
    `buffers` (its floating-point buffers) hold a leading dimension m, `shared` (integer buffers) none.

    Writes each BN layer's statistics, of shape (m, C), into `buffers` in place; the same statistics, network
    by network, as `recompute_bn` (up to float summation order). Returns False for a network without BN.
    """
    layers = batchnorm_layers(net)
    if not layers:
        return False
    names = {id(mod): name for name, mod in net.named_modules()}
    seen: list[tuple[int, int]] = []  # (layer, values per channel) of each BN call, in call order
    found: list[torch.Tensor] = []  # their (mean, var) pairs, returned from the vmapped call

    def note(i: int, n: int, layer: _BatchNorm) -> None:  # inside vmap: the layer's buffers are batched
        seen.append((i, n))
        found.extend(t.clone() for t in _batch_statistics(layer))

    def run(p, fb, ib, x):
        seen.clear()
        found.clear()
        functional_call(net, {**p, **fb, **ib}, (x,))
        return list(found)

    moments = Moments(len(layers))
    batched = vmap(run, in_dims=(0, 0, None, None), randomness="different")
    with _BatchNormPass(net, layers, note):
        for x in batch_inputs(batches, task):
            with speed.autocast(x.device):
                out = batched(params, buffers, shared, speed.input(x))
            for k, (i, n) in enumerate(seen):
                moments.add(i, n, out[2 * k], out[2 * k + 1])
    for i, m in enumerate(layers):
        mean, var = moments.statistics(i)
        buffers[f"{names[id(m)]}.running_mean"].copy_(mean)  # track_running_stats: both buffers exist
        buffers[f"{names[id(m)]}.running_var"].copy_(var)
    return True
