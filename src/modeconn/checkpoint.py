"""Files a researcher can trust: safetensors weights, JSON metadata, atomic writes, safe loading."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from . import distributed
from .errors import ModeconnError
from .flat import check_same_architecture


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to `path` so that readers see either the old file or the whole new one.

    Every file modeconn writes goes through here. Under torchrun only rank 0 writes, and every
    rank waits until the file is on disk, so a rank may read it right after.
    """
    _on_rank0(lambda: _write_replace(Path(path), data))


def remove_file(path) -> None:
    """Delete a file if present (rank 0 only under torchrun; the others wait)."""
    _on_rank0(lambda: Path(path).unlink(missing_ok=True))


def _on_rank0(action) -> None:
    """Do a filesystem change on rank 0 only; every rank leaves once it is done."""
    try:
        if distributed.is_main():
            action()
    finally:
        distributed.barrier()


def _write_replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path) -> dict:
    """Read a JSON file, refusing a missing or corrupt one by name."""
    path = Path(path)
    if not path.exists():
        raise ModeconnError(f"{path} does not exist: point at a folder written by modeconn")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModeconnError(f"{path} is truncated or corrupt ({exc}); rerun the command that wrote it") from None


def save_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically write tensors as safetensors (contiguous CPU copies, no shared storage)."""
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    atomic_write(path, st_save(clean, metadata=metadata))


def load_metadata(path) -> dict[str, str]:
    """The string metadata stored in a .safetensors file's header."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return fh.metadata() or {}
    except Exception as exc:
        raise ModeconnError(f"{path} is truncated or corrupt ({exc}); re-create it") from None


def load_tensors(path) -> dict[str, torch.Tensor]:
    """Load a .safetensors file, or a .pt state dict with weights_only=True (never unpickling code)."""
    path = Path(path)
    if not path.exists():
        raise ModeconnError(f"{path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return st_load(path.read_bytes())
        except Exception as exc:  # safetensors raises several types for bad headers and short files
            raise ModeconnError(f"{path} is truncated or corrupt ({exc}); re-create it") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModeconnError(f"{path} cannot be loaded as a plain state dict ({str(exc).splitlines()[0]}); "
                            "save weights with safetensors or torch.save(model.state_dict())") from None
    for key in ("state_dict", "model_state", "model"):  # common wrappers in training scripts
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModeconnError(f"{path} does not hold a state dict of tensors")
    return obj


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, refusing one whose names or shapes differ, naming the first difference."""
    check_same_architecture(module.state_dict(), state, what=("the model", source))
    module.load_state_dict(state)


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
            p = params[int(i)]
            optimizer.state[p][key] = value.to(p.device)


def prepare_out_dir(out, resume: bool, finished_file: str = "run.json") -> Path:
    """Create `out`, refusing to overwrite a finished run or to silently restart an unfinished one."""
    out = Path(out)
    if (out / finished_file).exists():
        raise ModeconnError(f"{out} already holds a finished run ({finished_file}); choose another --out")
    if (out / "checkpoint.safetensors").exists() and not resume:
        raise ModeconnError(f"{out} holds an unfinished run: pass --resume to continue it, or choose another --out")
    make_dir(out)
    return out


def make_dir(path) -> Path:
    """Create a folder and its parents (rank 0 only under torchrun; the others wait)."""
    path = Path(path)
    _on_rank0(lambda: path.mkdir(parents=True, exist_ok=True))
    return path
