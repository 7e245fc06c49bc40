"""Loss and error of a network on a dataset, and exact BatchNorm statistics for any weights."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.functional import cross_entropy
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim.swa_utils import update_bn

from . import speed


def has_batchnorm(module: nn.Module) -> bool:
    """Whether the module has BatchNorm layers that track running statistics."""
    return any(isinstance(m, _BatchNorm) and m.track_running_stats for m in module.modules())


@torch.no_grad()
def recompute_bn(model: nn.Module, batches) -> bool:
    """Reset BN running statistics and recompute them as an exact cumulative average over `batches`.

    Returns False, doing no pass, for a network without BatchNorm.
    """
    if not has_batchnorm(model):
        return False
    with speed.autocast(next(model.parameters()).device):
        update_bn(batches, model)  # momentum=None: the exact average over all batches, as the paper does
    return True


@torch.no_grad()
def evaluate(model, batches) -> dict[str, float]:
    """Mean cross-entropy and error (a fraction) of `model` (any x -> logits callable) on `batches`."""
    if isinstance(model, nn.Module):
        was_training = model.training
        model.eval()
    loss_sum, wrong, count = 0.0, 0, 0
    for x, y in batches:  # sums stay on the data's device: one host sync at the end, not per batch
        with speed.autocast(x.device):
            logits = model(x)
        loss_sum = loss_sum + cross_entropy(logits.float(), y, reduction="sum").double()
        wrong = wrong + (logits.argmax(1) != y).sum()
        count += len(y)
    if isinstance(model, nn.Module):
        model.train(was_training)
    return {"loss": float(loss_sum) / count, "err": float(wrong) / count}

