"""Running under torchrun: the process group, this rank's device, rank-0 writing, sharded points.

Outside torchrun (no WORLD_SIZE > 1 in the environment) every function here is a no-op for
one process, so the rest of the code has a single path for both cases.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ModeconnError


def launched() -> bool:
    """Whether torchrun (or another launcher setting WORLD_SIZE > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


_alone = False  # inside `alone()`: this rank works as a process of its own


def active() -> bool:
    """Whether a process group with more than one process is running (and this rank is not `alone()`)."""
    return not _alone and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (from torchrun's environment before the group is joined); 0 when alone."""
    if _alone:
        return 0
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the only process that writes files and shows progress."""
    return rank() == 0


@contextmanager
def alone():
    """Within: this rank acts as one process on its own (rank 0 of 1: it writes its own files and joins
    no collective), e.g. to train its own share of independent networks while the others train theirs."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group (NCCL on GPUs, gloo on CPU) once; return this rank's device.

    Under torchrun a CUDA device becomes cuda:LOCAL_RANK, so `--device cuda` means one GPU per process.
    """
    global _device
    if not launched():
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ModeconnError(f"local rank {local} has no GPU ({torch.cuda.device_count()} visible); "
                                "start at most one process per GPU (--nproc-per-node)")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT, store=_attempt_store(),
                                rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
    _device = device  # collectives on this rank's device (NCCL needs CUDA tensors)
    return device


_device = torch.device("cpu")


TIMEOUT = timedelta(minutes=60)


def _attempt_store():
    """torchrun's key-value store, with keys private to this restart attempt.

    After `--max-restarts` restarts the workers, they meet in the agent's store again; without
    a per-attempt prefix, gloo read the dead workers' addresses left from the previous attempt
    and failed to connect (seen with torch 2.13). Outside an agent store, env:// as usual.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), int(os.environ["WORLD_SIZE"]),
                          is_master=False, timeout=TIMEOUT)
    return dist.PrefixStore(f"modeconn/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (e.g. until rank 0's file is on disk before others read it)."""
    if active():
        dist.barrier()


def my_indices(n: int) -> list[int]:
    """The items of 0..n-1 this rank computes: whole points, dealt round-robin."""
    return list(range(rank(), n, world_size()))


def combine_rows(rows: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of (n, ...) tensors where each rank filled its own rows and left zeros elsewhere.

    Adding zeros is exact, so the result equals what one process computing every row would hold.
    """
    if active():
        dist.all_reduce(rows, op=dist.ReduceOp.SUM)
    return rows


def gather_rows(n: int, width: int, rows_for, device) -> torch.Tensor:
    """An (n, width) float64 table whose row i the rank owning item i computes (`rows_for(its indices)`
    yields them in order); every rank gets the whole table, exactly (the others add zeros)."""
    local = my_indices(n)
    rows = torch.zeros(n, width, dtype=torch.float64, device=device)
    if local:
        for i, row in zip(local, rows_for(local)):
            rows[i] = torch.tensor(row, dtype=torch.float64, device=device)
    return combine_rows(rows)


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """Average of a tensor over ranks (in place)."""
    if active():
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= world_size()
    return value


def all_agree(ok: bool) -> bool:
    """True on every rank when `ok` is true on every rank (e.g. rank 0 could claim the output folder)."""
    if not active():
        return ok
    flag = torch.tensor(int(ok), device=_device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def shard_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """This rank's contiguous share of a global batch, and the factor that makes DDP's gradient
    average equal the gradient of the whole batch's mean loss (shares may differ by one)."""
    n, w = len(y), world_size()
    if w == 1:
        return x, y, 1.0
    if n < w:
        raise ModeconnError(f"a batch of {n} examples cannot be shared by {w} processes; choose a batch size "
                            f"and dataset size whose last batch holds at least {w} examples")
    lo, hi = rank() * n // w, (rank() + 1) * n // w
    return x[lo:hi], y[lo:hi], (hi - lo) * w / n
