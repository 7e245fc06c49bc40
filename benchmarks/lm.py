"""The tiny GPT (`hf:gpt2-tiny`, 462k parameters, tied embeddings) on fortunes blocks: curve step against plain step,
peak memory of curve training against plain training, and alignment beside one training step, measured in one run.

Prints three tables:
- median milliseconds per step (interleaved repeats) of plain training and of curve training (Bezier, one bend),
  both with AdamW on the lm task's loss, as `modeconn train` and `modeconn connect` run them; the ratio;
- peak memory of each, each measured in a fresh process: on CUDA torch.cuda.max_memory_allocated, on the CPU the
  growth of the process's peak resident set over what it held before its first step; beside them the tensors
  counted out (weights, endpoints, bend, phi, gradients, optimizer state);
- seconds of weight matching and activation matching between two GPTs, beside one plain training step.
Usage: python benchmarks/lm.py [--device cpu|cuda] [--repeats N] [--iters N] [--batch B]
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch

import modeconn as mc
from modeconn import Curve
from modeconn.runtime.cpu_memory import keep_freed_memory

BLOCK = 128


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _gpt(device):
    return mc.create_model("hf:gpt2-tiny", (BLOCK,), 256, mc.language_modeling()).to(device).train()


def _batch(batch, device):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, BLOCK), generator=gen).to(device)


def _steps(device, batch, kinds=("plain", "curve")) -> dict:
    """{kind: step} for plain training and curve training (each with its own optimizer) on one batch of token
    ids; only the kinds asked for are built (a memory measurement holds nothing else)."""
    torch.manual_seed(0)
    task = mc.language_modeling()
    x = _batch(batch, device)
    gen = torch.Generator().manual_seed(0)
    steps = {}
    if "plain" in kinds:
        plain = _gpt(device)
        opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-3, weight_decay=0.01)

        def plain_step():
            loss = task.loss(plain(x), x)
            opt_plain.zero_grad(set_to_none=True)
            loss.backward()
            opt_plain.step()
        steps["plain"] = plain_step
    if "curve" in kinds:
        curve = Curve(_gpt(device), _gpt(device), kind="bezier", bends=1).to(device).train()
        opt_curve = torch.optim.AdamW([curve.free_points], lr=1e-3, weight_decay=0.0)

        def curve_step():  # as modeconn.training.train.train_curve: one t per batch, the decay in phi's backward
            loss = task.loss(curve(x, Curve.sample_t(gen), wd=0.01), x)
            opt_curve.zero_grad(set_to_none=True)
            loss.backward()
            opt_curve.step()
        steps["curve"] = curve_step
    return steps


def time_steps(step, device, iters):
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def measure_memory(kind: str, device, batch: int, iters: int) -> dict:
    """Peak memory of `iters` steps of one kind, in this (fresh) process."""
    step = _steps(device, batch, (kind,))[kind]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    else:
        base = _resident_bytes()
    for _ in range(iters):
        step()
    _sync(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return {"kind": kind, "before": base, "peak": peak}


def counted(params: int) -> dict[str, int]:
    """Bytes of the tensors each kind of training holds besides activations (float32, AdamW's two moments)."""
    p = 4 * params
    return {"plain": p * 4,  # weights, gradients, AdamW's two moments
            "curve": p * 2 + p + p + p + p * 2}  # endpoints (fixed), bend, phi, the bend's gradient, its two moments


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iters", type=int, default=10, help="steps per timed repeat")
    parser.add_argument("--batch", type=int, default=32, help="blocks of 128 tokens per step (the recipe's)")
    parser.add_argument("--memory-of", choices=["plain", "curve"], help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    device = torch.device(args.device)
    keep_freed_memory()
    if args.memory_of:
        print(json.dumps(measure_memory(args.memory_of, device, args.batch, 5)))
        return
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"hf:gpt2-tiny on {args.batch} x {BLOCK} tokens, AdamW, torch {torch.__version__}, {where}")

    steps = _steps(device, args.batch)
    params = sum(p.numel() for p in _gpt("cpu").parameters())
    for step in steps.values():  # warm-up
        time_steps(step, device, 2)
    times: dict[str, list[float]] = {"plain": [], "curve": []}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits both alike
        for kind, step in steps.items():
            times[kind].append(time_steps(step, device, args.iters))
    med = {k: 1000 * statistics.median(v) for k, v in times.items()}
    print(f"\n{'params':>10} {'plain ms':>9} {'curve ms':>9} {'ratio':>6}  (median of {args.repeats} x {args.iters})")
    print(f"{params:>10,} {med['plain']:>9.1f} {med['curve']:>9.1f} {med['curve'] / med['plain']:>6.3f}")

    rows = {}
    for kind in ("plain", "curve"):
        out = subprocess.run([sys.executable, __file__, "--device", args.device, "--batch", str(args.batch),
                              "--memory-of", kind], capture_output=True, text=True, check=True).stdout
        rows[kind] = json.loads(out.strip().splitlines()[-1])
    grown = {k: (r["peak"] - r["before"]) if device.type == "cpu" else r["peak"] for k, r in rows.items()}
    what = "peak RSS growth over the state before the first step" if device.type == "cpu" else \
        "max_memory_allocated"
    count = counted(params)
    print(f"\npeak memory ({what}), MB; counted: weights and optimizer tensors without activations")
    print(f"{'kind':>6} {'peak MB':>9} {'counted MB':>11}")
    for kind in ("plain", "curve"):
        print(f"{kind:>6} {grown[kind] / 2**20:>9.1f} {count[kind] / 2**20:>11.1f}")
    print(f"ratio curve / plain: {grown['curve'] / grown['plain']:.2f}")

    torch.manual_seed(1)
    a, b = _gpt(device).eval(), _gpt(device).eval()
    x = _batch(args.batch, device)
    batches = [(x, x)] * 4
    print(f"\nalignment of two GPTs (seconds; one plain training step: {med['plain'] / 1000:.3f} s)")
    for method in ("weights", "activations"):
        start = time.perf_counter()
        _, info = mc.align(a, b, method, batches=batches, task=mc.language_modeling())
        print(f"{method:>12}: {time.perf_counter() - start:.2f} s ({info.passes} passes, {len(info.groups)} groups)")


if __name__ == "__main__":
    main()
