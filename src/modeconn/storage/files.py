"""Files a researcher can trust: atomic writes, safetensors, JSON and NPZ, loaded safely and refused by name when
corrupt."""
from __future__ import annotations

import io
import json
import os
import secrets
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..core.flat import check_same_architecture
from ..errors import ModeconnError, param
from ..runtime import distributed


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


def _new_temp(path: Path) -> tuple[int, str]:
    """A new, unique temporary file beside `path`, opened for writing, with the mode any new file gets (0666
    less the process's umask, applied by the OS: results are as readable as the user's other files)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def _write_replace(path: Path, data: bytes) -> None:
    had = path.exists()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_temp(path)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # a full disk, an I/O error, a permission lost mid-run: say so in one line
            kept = f"the previous {path.name} is kept as it was" if had else "nothing of it was left"
            raise ModeconnError(f"could not write {path} ({exc.strerror or exc}); {kept}; free space or fix "
                                "permissions, then rerun (a training run continues from its last checkpoint "
                                f"with {param('resume')})") from None
        raise


def write_json(path, obj) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path) -> dict:
    """Read a JSON file, refusing a missing, unreadable or corrupt one by name."""
    path = Path(path)
    if not path.exists():
        raise ModeconnError(f"{path} does not exist: point at a folder written by modeconn")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModeconnError(f"{path} is truncated or corrupt ({exc}); rerun the command that wrote it") from None
    except OSError as exc:  # a folder in the file's place, a permission
        raise ModeconnError(f"cannot read {path} ({exc.strerror or exc}); point at a folder written by modeconn"
                            ) from None


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


def save_npz(path, arrays: dict) -> None:
    """Atomically write arrays as an .npz file (no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


def load_npz(path) -> dict:
    """Read an .npz file without unpickling, refusing a truncated or corrupt one by name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head != b"PK\x03\x04":  # not a zip archive: numpy would call any other bytes "pickled data"
            raise ModeconnError(f"{path} is truncated or corrupt (not an NPZ file: it does not start as a zip "
                                "archive does); rerun the command that wrote it")
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ModeconnError(f"{path} does not exist: point at a folder written by modeconn") from None
    except ModeconnError:
        raise
    except Exception as exc:
        raise ModeconnError(f"{path} is truncated or corrupt ({exc}); rerun the command that wrote it") from None


def load_state_into(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load a state dict, refusing different names or shapes, non-float or non-finite weights, by name."""
    check_same_architecture(module.state_dict(), state, what=("the model", source))
    for name, target in module.state_dict().items():
        value = state[name]
        if target.is_floating_point() != value.is_floating_point():
            raise ModeconnError(f"{source}: {name!r} holds {value.dtype} values where the model has {target.dtype}; "
                                "save the network's own state_dict, unconverted")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ModeconnError(f"{source}: {name!r} holds NaN or infinite values (a diverged network); "
                                "use a network whose training finished with a finite loss")
    module.load_state_dict(state)


def make_dir(path) -> Path:
    """Create a folder and its parents (rank 0 only under torchrun; the others wait)."""
    path = Path(path)
    _on_rank0(lambda: path.mkdir(parents=True, exist_ok=True))
    return path
