"""Seconds for a G x G landscape slice vs a G x G plane through three networks, measured in one run.

Both commands evaluate their grid with the same `measure_grid` and `PointEvaluator`, so the times
should agree within noise. Three MNIST-1D networks are trained first (a few epochs each).
Usage: python benchmarks/landscape.py [--grid G] [--repeats N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from modeconn.commands import landscape, plane, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nets = [root / f"n{s}" for s in range(3)]
        for s, folder in enumerate(nets):
            train(folder, epochs=5, seed=s, device=args.device, progress=False)
        times = {"plane": [], "landscape": []}
        for r in range(args.repeats):  # interleaved, so drift hits both alike
            start = time.perf_counter()
            plane(root / f"p{r}", points=nets, grid=args.grid, device=args.device, progress=False)
            times["plane"].append(time.perf_counter() - start)
            start = time.perf_counter()
            landscape(root / f"l{r}", run=nets[0], grid=args.grid, device=args.device, progress=False)
            times["landscape"].append(time.perf_counter() - start)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"{platform.machine()}, {torch.get_num_threads()} threads"
    p, s = statistics.median(times["plane"]), statistics.median(times["landscape"])
    print(f"# {args.grid}x{args.grid} grid, MNIST-1D conv1d, torch {torch.__version__}, {where}; "
          f"median of {args.repeats}")
    print("| command | seconds | per point (ms) |")
    print("|---|---|---|")
    for name, sec in (("plane --points", p), ("landscape", s)):
        print(f"| {name} | {sec:.2f} | {1e3 * sec / args.grid ** 2:.1f} |")
    print(f"landscape / plane: {s / p:.2f}")


if __name__ == "__main__":
    main()
