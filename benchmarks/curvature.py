"""One Hessian-vector product vs one gradient of the same network and batch, measured in one run.

Both go through `HessianOperator`, the code `modeconn curvature` uses: the gradient is
`torch.func.grad` of the functional call, the HVP is `jvp` of that gradient (forward over
reverse). Prints median milliseconds (interleaved repeats) and the ratio HVP / gradient; the
target is at most 3 (theory: about 2).
Usage: python benchmarks/curvature.py [--device cpu|cuda] [--repeats N] [--models conv1d convbn mlp vgg16]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from modeconn.evaluation.curvature import HessianOperator
from modeconn.models import create_model

CASES = {  # model: (input shape, classes, batch)
    "conv1d": ((40,), 10, 1000),
    "convbn": ((1, 28, 28), 10, 500),
    "mlp": ((1, 28, 28), 10, 1000),
    "vgg16": ((3, 32, 32), 10, 128),
}


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def bench(name: str, device, repeats: int) -> tuple[int, float, float]:
    shape, classes, batch = CASES[name]
    torch.manual_seed(0)
    net = create_model(name, shape, classes).to(device)
    x = torch.randn(batch, *shape, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    op = HessianOperator(net, [(x, y)])
    v = torch.randn(op.weights.numel(), device=device)
    op.gradient(), op(v)  # warm-up
    grads, hvps = [], []
    for _ in range(repeats):  # interleaved, so drift hits both alike
        grads.append(_timed(op.gradient, device))
        hvps.append(_timed(lambda: op(v), device))
    return op.weights.numel(), statistics.median(grads) * 1e3, statistics.median(hvps) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    args = parser.parse_args()
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# HVP vs gradient, torch {torch.__version__}, {where}; median of {args.repeats}")
    print("| model | params | batch | gradient ms | HVP ms | HVP / gradient |")
    print("|---|---|---|---|---|---|")
    for name in args.models:
        params, g, h = bench(name, device, args.repeats)
        print(f"| {name} | {params:,} | {CASES[name][2]} | {g:.1f} | {h:.1f} | {h / g:.2f} |", flush=True)


if __name__ == "__main__":
    main()
