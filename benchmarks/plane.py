"""Grid points per second: one point at a time vs several at once with torch.func.vmap, in one run.

Usage: python benchmarks/plane.py [--device cpu|cuda] [--points N] [--fashion-train N] [--chunks 4 16]
Fashion-MNIST uses a training subset by default so the run takes minutes; pass --fashion-train 60000
for the full pass.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from modeconn.core.flat import parameters_vector
from modeconn.core.plane import plane_basis
from modeconn.data import load_dataset
from modeconn.evaluation.pointwise import EvalSettings, PointEvaluator
from modeconn.models import create_model
from modeconn.recipes import RECIPES
from modeconn.runtime.cpu_memory import keep_freed_memory


def grid_weights(name, data, n, device):
    torch.manual_seed(0)
    nets = [create_model(name, data.input_shape, data.num_classes).to(device) for _ in range(3)]
    basis = plane_basis(*(parameters_vector(m) for m in nets))
    side = int(np.ceil(np.sqrt(n)))
    coords = np.array([(x, y) for x in np.linspace(-0.5, 1.5, side) for y in np.linspace(-0.5, 1.5, side)])[:n]
    return nets[0], basis.points(coords * basis.u_norm)


def rate(template, data, weights, chunk, device) -> float:
    ev = PointEvaluator(template, data, EvalSettings(batch_size=1000), chunk=chunk)
    ev.many(weights[:chunk])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    ev.many(weights)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(weights) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--fashion-points", type=int, default=4)
    parser.add_argument("--fashion-train", type=int, default=10000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()
    keep_freed_memory()
    device = torch.device(args.device)
    print(f"plane grid points/s, {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'dataset':14} {'model':7} {'train':>6} {'points':>6} {'chunk':>5} {'points/s':>9} {'vs chunk 1':>10}")
    for ds, n in (("mnist1d", args.points), ("fashion-mnist", args.fashion_points)):
        data = load_dataset(ds)
        if ds == "fashion-mnist":
            data = data.subset(train=args.fashion_train)
        data = data.to(device)
        name = RECIPES[ds].model
        template, weights = grid_weights(name, data, n, device)
        base = None
        for chunk in [1, *args.chunks]:
            r = rate(template, data, weights, chunk, device)
            base = base or r
            print(f"{ds:14} {name:7} {len(data.train_x):>6} {n:>6} {chunk:>5} {r:>9.2f} {r / base:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
