"""Training loops for endpoint networks and curves, with the paper's schedule, resume and NaN guards."""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import TrainConfig
from ..core.curve import Curve
from ..core.simplex import Simplex
from ..core.span import WeightSpan
from ..data.datasets import DataSource
from ..errors import ModeconnError, param
from ..evaluation.batchnorm import has_batchnorm
from ..runtime import distributed
from ..runtime.speed import EAGER, Speed
from ..storage.checkpoint import Checkpoint, load_checkpoint, optimizer_tensors, restore_optimizer, save_checkpoint
from .schedule import schedule_of


def _epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    # One seed per epoch: a run resumed at epoch e draws exactly what an uninterrupted run draws.
    return cfg.seed * 100_003 + epoch


@dataclass(frozen=True)
class Checkpointing:
    """Where a run keeps its state after each epoch, and whether it continues from it.

    path: the checkpoint file (None: nothing is saved). resume: continue from it (a checkpoint
    present without resume is refused, never silently loaded or overwritten). settings: what the run
    computes, saved with the checkpoint; a resume with other settings is refused (default: the
    config). extra: a caller's own state, `get_extra() -> (tensors, strings)` and
    `set_extra(tensors, strings)` (FGE's ensemble so far).
    """

    path: Path | None = None
    resume: bool = False
    settings: dict | None = None
    extra: Any = None


@dataclass(frozen=True)
class Hooks:
    """What a run shows and calls as it goes: a progress bar labelled `desc`, and `on_epoch_end(epoch,
    optimizer)` after each epoch (epoch counted from 0), e.g. to keep that epoch's state."""

    progress: bool = True
    desc: str = "train"
    on_epoch_end: Callable[[int, torch.optim.Optimizer], None] | None = None


def make_optimizer(cfg: TrainConfig, params, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer `cfg.optimizer` names over `params`: SGD with momentum, or AdamW. `weight_decay` is the
    optimizer's own (decoupled for AdamW); curves and simplexes pass 0 and add the decay at the sampled point
    to the gradient themselves, so for them AdamW is Adam with that L2 term."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=weight_decay)


def fit(module: nn.Module, params, step_loss, data: DataSource, cfg: TrainConfig, *, lr_at=None,
        weight_decay: float = 0.0, optimizer_state: dict | None = None, stop_epoch: int | None = None,
        checkpointing: Checkpointing = Checkpointing(), hooks: Hooks = Hooks(), speed: Speed = EAGER):
    """The one training loop: `step_loss(forward, x, y, t_generator)` returns the minibatch loss to minimise, with
    the optimizer `cfg.optimizer` names (`make_optimizer`).

    `forward` is the module to call: the module itself, or under torchrun its
    DistributedDataParallel wrapper, where each rank takes its share of every batch (drawn the
    same on all ranks, so t is the same too) and only rank 0 writes checkpoints.

    `lr_at(progress)` sets the learning rate per iteration (default: `cfg.schedule`).
    `checkpointing` says where the state is saved atomically after every epoch and whether the run
    continues from it; `hooks` what it shows and calls after each epoch. `optimizer_state` starts the
    optimizer from a saved state (FGE). `stop_epoch` ends the run early, after that many epochs of
    the `cfg.epochs` schedule (a shared prefix, as instability analysis spawns from). Returns the
    mean training loss of each epoch and the optimizer.

    Losses stay on the device and are read back every CHECK_EVERY steps and at the end of each
    epoch, so no step waits for the device; a loss that is not finite then stops the run, naming
    the first such step and its learning rate (the network holds the weights of the steps taken
    since; nothing of them is saved).
    """
    lr_at = lr_at or schedule_of(cfg)
    checkpoint, resume, extra_state = checkpointing.path, checkpointing.resume, checkpointing.extra
    settings = checkpointing.settings if checkpointing.settings is not None else {"config": cfg.to_dict()}
    progress, desc, on_epoch_end = hooks.progress, hooks.desc, hooks.on_epoch_end
    optimizer = make_optimizer(cfg, params, weight_decay)
    if optimizer_state:
        restore_optimizer(optimizer, optimizer_state)
    start_epoch, history = 0, []
    if checkpoint is not None and checkpoint.exists():
        if not resume:
            raise ModeconnError(f"{checkpoint} holds a run's last saved epoch: pass {param('resume')} to continue "
                                f"from it, or choose another {param('checkpoint', 'out')}")
        saved = load_checkpoint(checkpoint, settings)
        module.load_state_dict(saved.module)
        restore_optimizer(optimizer, saved.optimizer)
        start_epoch, history = saved.epoch, saved.history
        if extra_state is not None:
            extra_state.set_extra(saved.extra, saved.extra_meta)
    _refuse_a_batch_of_one(module, data, cfg.batch_size)
    device = next(module.parameters()).device
    forward = _step_forward(module, speed)
    batches = data.train_batches(cfg.batch_size, shuffle=True, seed=cfg.seed)
    steps_per_epoch = len(batches)
    total = cfg.epochs * steps_per_epoch
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=desc, disable=not progress,
               dynamic_ncols=True, leave=False)
    rank_seed = 1_000_003 * distributed.rank()  # ranks draw different dropout masks, as one process would
    module.train()
    for epoch in range(start_epoch, cfg.epochs if stop_epoch is None else stop_epoch):
        torch.manual_seed(_epoch_seed(cfg, epoch) + rank_seed)  # dropout and other global randomness
        t_gen = torch.Generator().manual_seed(_epoch_seed(cfg, epoch) + 1)
        batches.set_epoch(epoch)
        window = _LossWindow(epoch * steps_per_epoch, checkpoint if epoch > 0 else None)
        loss_sum, n = 0.0, 0
        for i, item in enumerate(batches):
            x, y = data.task.split(item)
            step = epoch * steps_per_epoch + i
            lr = lr_at(step / total)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y, share = distributed.shard_batch(speed.input(x), y)
            with speed.autocast(device):
                loss = step_loss(forward, x, y, t_gen)
            if share != 1.0:  # DDP averages gradients over ranks; weight each rank's mean by its share
                loss = loss * share
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            window.add(loss, lr)
            if len(window) == CHECK_EVERY or i == steps_per_epoch - 1:
                values = window.read(epoch, bar)  # raises, naming the first bad step, if a loss is not finite
                loss_sum, n = loss_sum + sum(values), n + len(values)
                bar.update(len(values))
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / n:.4f}", lr=f"{lr:.3g}")
        history.append(loss_sum / max(n, 1))
        if on_epoch_end is not None:
            on_epoch_end(epoch, optimizer)
        if checkpoint is not None:
            tensors, meta = extra_state.get_extra() if extra_state is not None else ({}, {})
            save_checkpoint(checkpoint, Checkpoint(module.state_dict(), optimizer_tensors(optimizer),
                                                   epoch + 1, history,
                                                   settings, tensors, meta or {}))
    bar.close()
    return history, optimizer


CHECK_EVERY = 25  # steps between reads of the losses back to the host (NaN check, progress bar)


def _refuse_a_batch_of_one(module: nn.Module, data: DataSource, batch_size: int) -> None:
    """Refuse, before the first step, an epoch whose last batch would hold one example where the network has
    BatchNorm: a training batch of one cannot be normalised by its own statistics (BatchNorm1d raises)."""
    n = data.train_size
    if n is not None and n % batch_size == 1 and has_batchnorm(module):
        raise ModeconnError(f"{n} training examples in batches of {batch_size} leave a last batch of one example, "
                            f"which BatchNorm cannot normalise in training; choose another {param('batch_size')}")


class _LossWindow:
    """The last few steps' losses, kept on the device and read back to the host once per window.

    Reading a loss every step (`loss.item()`) would make the host wait for the device at every
    step. Here the losses stay on the device until `read`, which checks them all at once and, if
    one is not finite, names the first such step and its learning rate exactly.
    """

    def __init__(self, first_step: int, checkpoint: Path | None):
        self.first_step, self.checkpoint = first_step, checkpoint
        self.losses: list[torch.Tensor] = []
        self.lrs: list[float] = []

    def __len__(self) -> int:
        return len(self.losses)

    def add(self, loss: torch.Tensor, lr: float) -> None:
        self.losses.append(loss.detach())
        self.lrs.append(lr)

    def read(self, epoch: int, bar) -> list[float]:
        """The window's losses (averaged over ranks) as floats; one host read. Starts the next window."""
        values = distributed.all_mean(torch.stack(self.losses).float()).tolist()
        bad = next((j for j, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            bar.close()
            raise ModeconnError(_diverged(values[bad], self.first_step + bad, epoch, self.lrs[bad], self.checkpoint))
        self.first_step += len(values)
        self.losses, self.lrs = [], []
        return values


def _diverged(value: float, step: int, epoch: int, lr: float, checkpoint: Path | None) -> str:
    """The message for a loss that is no longer finite, saying truthfully what can be done next."""
    text = (f"loss became {value} at step {step} (epoch {epoch + 1}) with learning rate {lr:.4g}; lower {param('lr')} "
            "and start a new run")
    if checkpoint is not None:
        text += (f" in another {param('checkpoint', 'out')} ({checkpoint} holds the last finished epoch, but "
                 f"{param('resume')} keeps the same settings and would diverge again)")
    return text


def _step_forward(module: nn.Module, speed: Speed):
    """What a training step calls: the module, made channels_last, DDP and compiled as asked."""
    if isinstance(module, WeightSpan):  # curves, simplexes: views of flat vectors; they compile their run
        if speed.compile:
            module.compile_network()
        return _data_parallel(module)
    return speed.compiled(_data_parallel(speed.module(module)))


def _data_parallel(module: nn.Module):
    """The module wrapped in DistributedDataParallel under torchrun, else the module itself."""
    if not distributed.active():
        return module
    device = next(module.parameters()).device
    ddp = nn.parallel.DistributedDataParallel
    # A curve's or simplex's buffers (fixed points, BN statistics at the control points) never change while it
    # trains: broadcasting them from rank 0 before every step would send two networks' worth each time.
    # (torch >= 2.13 names the option forward_sync_buffers; older releases broadcast_buffers.)
    sync = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
            else "broadcast_buffers")
    # Any: the option's name is chosen at run time, so the checker cannot match it to one of ddp's parameters
    sync_option: dict[str, Any] = {sync: not isinstance(module, WeightSpan)}
    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None, **sync_option)


def train_network(model: nn.Module, data: DataSource, cfg: TrainConfig, *, checkpoint: Path | None = None,
                  resume: bool = False, settings: dict | None = None, progress: bool = True, desc: str = "train",
                  on_epoch_end=None, stop_epoch: int | None = None, speed: Speed = EAGER):
    """Train an ordinary network on its data's task loss (`data.task`; cross-entropy by default) with the optimizer,
    weight decay and schedule `cfg` names (SGD with momentum and the paper's schedule by default).

    `checkpoint`, `resume` and `settings` as `Checkpointing`'s; `progress`, `desc`, `on_epoch_end`
    as `Hooks`'; `stop_epoch` ends after that many epochs of the schedule. Returns (mean training
    loss per epoch, the optimizer). Raises ModeconnError on a loss that is not finite.
    """
    def step_loss(forward, x, y, _gen):
        return data.task.loss(forward(x), y)

    # SGD's weight_decay adds wd * w to the gradient: the gradient of 0.5 * wd * ||w||^2.
    return fit(model, list(model.parameters()), step_loss, data, cfg, weight_decay=cfg.wd, stop_epoch=stop_epoch,
               checkpointing=Checkpointing(checkpoint, resume, settings), hooks=Hooks(progress, desc, on_epoch_end),
               speed=speed)


def train_curve(curve: Curve, data: DataSource, cfg: TrainConfig, *, checkpoint: Path | None = None,
                resume: bool = False, settings: dict | None = None, progress: bool = True, desc: str = "connect",
                speed: Speed = EAGER):
    """Fit a curve (Garipov et al. 2018): each minibatch draws one t ~ U(0, 1) and steps on
    L(phi(t)) + 0.5 wd ||phi(t)||^2. Keywords as `train_network`'s; returns (losses per epoch, optimizer)."""
    def step_loss(forward, x, y, gen):
        t = curve.sample_t(gen)  # the same t on every rank: same generator, same draws
        # The decay's gradient joins in the curve's backward. Its value is left out of the reported
        # loss, as SGD's weight_decay leaves it out of a network's: both report the task's loss.
        return data.task.loss(forward(x, t, wd=cfg.wd), y)

    free = [p for p in curve.parameters() if p.requires_grad]
    return fit(curve, free, step_loss, data, cfg, checkpointing=Checkpointing(checkpoint, resume, settings),
               hooks=Hooks(progress, desc), speed=speed)


VOLUME_FLOOR = 1e-4  # Benton et al.: log(volume + 1e-4), finite for a vertex still in the others' span
SPRO_VOLUME_WEIGHT = 1e-8  # Benton et al.'s code: max(1e-10 / log(initial volume), 1e-8), i.e. 1e-8


def train_simplex(simplex: Simplex, data: DataSource, cfg: TrainConfig, volume_weight: float = SPRO_VOLUME_WEIGHT, *,
                  lr_at=None, checkpoint: Path | None = None, resume: bool = False, settings: dict | None = None,
                  progress: bool = True, desc: str = "simplex", speed: Speed = EAGER):
    """Fit a simplex's free vertices (SPRO, Benton et al. 2021): each minibatch draws one point
    uniformly from the simplex and steps on L(phi) + 0.5 wd ||phi||^2 - volume_weight log(volume + 1e-4)."""
    def step_loss(forward, x, y, gen):
        weights = simplex.sample_weights(gen)  # the same draw on every rank: same generator
        loss = data.task.loss(forward(x, weights, wd=cfg.wd), y)
        if volume_weight:
            loss = loss - volume_weight * torch.log(simplex.volume() + VOLUME_FLOOR).to(loss.dtype)
        return loss

    free = [p for p in simplex.parameters() if p.requires_grad]
    return fit(simplex, free, step_loss, data, cfg, lr_at=lr_at,
               checkpointing=Checkpointing(checkpoint, resume, settings), hooks=Hooks(progress, desc), speed=speed)
