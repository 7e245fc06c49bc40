"""Running one template module on many weight vectors: the tensors of each call written into it.

Used by curves and simplexes, whose points are views of one flat vector per step.
"""
from __future__ import annotations

import torch
from torch import nn


def tied_names(module: nn.Module) -> list[tuple[str, str]]:
    """(alias, name) for each tensor a module holds under a second name (a tied weight)."""
    first: dict[int, str]
    found: list[tuple[str, str]]
    first, found = {}, []
    for prefix, sub in module.named_modules(remove_duplicate=False):
        for slots in (sub._parameters, sub._buffers):
            for key, tensor in slots.items():
                if tensor is not None:
                    full = f"{prefix}.{key}" if prefix else key
                    name = first.setdefault(id(tensor), full)
                    if name != full:
                        found.append((full, name))
    return found


def retie(module: nn.Module, ties: list[tuple[str, str]]) -> nn.Module:
    """Make each alias the same tensor as its name again (moving a module between devices unties them)."""
    for alias, name in ties:
        owner, _, key = alias.rpartition(".")
        sub = module.get_submodule(owner)
        if key in sub._parameters:
            sub._parameters[key] = module.get_parameter(name)
        else:
            sub._buffers[key] = module.get_buffer(name)
    return module


class Binder:
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
    def for_module(cls, net: nn.Module) -> Binder | None:
        """A binder for `net`, or None where only `functional_call` is safe: a module with its own
        `__setattr__` (e.g. RNNs cache their weights there) would not see tensors written this way."""
        if any(type(m).__setattr__ is not nn.Module.__setattr__ for m in net.modules()):
            return None
        canonical = {id(t): name for name, t in [*net.named_parameters(), *net.named_buffers()]}
        targets: dict[str, list[tuple[dict, str]]] = {}
        for _, module in net.named_modules(remove_duplicate=False):
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
