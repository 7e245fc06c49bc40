"""The training checkpoint: one safetensors file with the module, optimizer, epoch, loss history,
the settings the run was started with, and a caller's own state; resumed only with matching settings."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import ModeconnError, param
from .files import load_metadata, load_tensors, save_tensors

# What --resume lets change: where and how fast it runs, never what it computes.
MAY_CHANGE_ON_RESUME = (f"{param('device')}, progress bars, {param('amp')}, {param('channels_last')}, "
                        f"{param('compile')} and {param('data_dir')}")


@dataclass
class Checkpoint:
    """A training run's state after `epoch` epochs."""

    module: dict[str, torch.Tensor]
    optimizer: dict[str, torch.Tensor]
    epoch: int
    history: list[float]
    settings: dict
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    extra_meta: dict[str, str] = field(default_factory=dict)


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    """Write the checkpoint atomically (rank 0 only under torchrun)."""
    state = {f"module.{k}": v for k, v in ckpt.module.items()}
    state.update(ckpt.optimizer)
    state.update({f"extra.{k}": v for k, v in ckpt.extra.items()})
    state["epoch"] = torch.tensor(ckpt.epoch, device="cpu")
    state["history"] = torch.tensor(ckpt.history, dtype=torch.float64, device="cpu")
    meta = {**ckpt.extra_meta, "settings": json.dumps(ckpt.settings, sort_keys=True)}
    save_tensors(path, state, metadata=meta)


def load_checkpoint(path: Path, settings: dict) -> Checkpoint:
    """Read a checkpoint, refusing one whose settings differ from `settings`."""
    check_settings(path, settings)
    saved = load_tensors(path)
    meta = load_metadata(path)
    try:
        return Checkpoint(module={k[len("module."):]: v for k, v in saved.items() if k.startswith("module.")},
                          optimizer={k: v for k, v in saved.items() if k.startswith("optim.")},
                          epoch=int(saved["epoch"]), history=saved["history"].tolist(), settings=settings,
                          extra={k[len("extra."):]: v for k, v in saved.items() if k.startswith("extra.")},
                          extra_meta={k: v for k, v in meta.items() if k != "settings"})
    except KeyError as exc:
        raise ModeconnError(f"{path} lacks {exc} and is not a modeconn checkpoint; delete it to start again") from None


def check_settings(path: Path, settings: dict) -> None:
    """Refuse to resume `path` with other settings than it was started with, naming the first difference."""
    raw = load_metadata(path).get("settings")
    if raw is None:
        raise ModeconnError(f"{path} does not record the settings it was started with, so it cannot be resumed "
                            "safely; delete it to start again")
    saved = json.loads(raw)
    diff = first_difference(saved, json.loads(json.dumps(settings)))
    if diff is not None:
        key, old, new = diff
        def shown(value):  # a setting left out (or None) is its default: say so rather than print null
            return "the default" if value is None else json.dumps(value)
        raise ModeconnError(f"{path.parent} was started with {key} = {shown(old)} but this command asks for "
                            f"{shown(new)}; {param('resume')} needs the same settings "
                            f"(only {MAY_CHANGE_ON_RESUME} may change): repeat them, or start a new run in "
                            f"another {param('checkpoint', 'out')}")


def first_difference(old, new, prefix: str = ""):
    """(dotted key, old value, new value) of the first difference between two JSON values, or None."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(new) + [k for k in old if k not in new]:
            diff = first_difference(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)
            if diff is not None:
                return diff
        return None
    return None if old == new else (prefix or "settings", old, new)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter tensors (e.g. SGD momentum), keyed by parameter index."""
    out = {}
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if isinstance(value, torch.Tensor):
                out[f"optim.{i}.{key}"] = value
    return out


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    """Put tensors saved by `optimizer_tensors` back into the optimizer's state."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            if not i.isdigit() or int(i) >= len(params):
                raise ModeconnError(f"optimizer state {name!r} belongs to another network (it has {len(params)} "
                                    "parameter tensors); start from a run of the same model")
            p = params[int(i)]
            # AdamW keeps its step count on the CPU (unless capturable or fused), as load_state_dict leaves it
            optimizer.state[p][key] = value if key == "step" else value.to(p.device)
