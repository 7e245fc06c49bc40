"""Curve-training step vs plain training step of the same network, measured in one run.

Prints a table: median milliseconds per step (interleaved repeats) and the ratio curve / plain.
Usage: python benchmarks/curve_step.py [--device cpu|cuda] [--repeats N] [--vgg-batch B]
       [--models vgg16 preresnet164] [--amp bf16] [--channels-last] [--compile] [--simplex] [--subspace]
       [--complex] [--floor]
With --simplex, a simplex step (3 vertices, one free, a Dirichlet draw per step, the volume term:
SPRO's second stage) is timed too, with its ratio to the plain step; with --complex, a step of a
complex of two faces (a one-bend polychain curve grown by one shared, free vertex); with --subspace, a step of a
line trained from scratch (both ends free, weight decay on each, the spread term); with --floor,
the curve step without forming phi (phi is the bend itself: no combination of the three control
points and no coefficient in its backward; everything else, the decay's hook included, as in a
curve step), to separate a curve step's fixed overhead from the arithmetic an exact curve needs.
The speed settings apply to both steps alike, as modeconn's training loop applies them.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.nn.functional import cross_entropy

from modeconn import Curve, Simplex
from modeconn.models import create_model
from modeconn.runtime.cpu_memory import keep_freed_memory
from modeconn.runtime.speed import Speed
from modeconn.training.subspace import SPREAD, matrix_ranges, squared_cosine
from modeconn.training.train import SPRO_VOLUME_WEIGHT, VOLUME_FLOOR

CASES = [  # name, model, input shape, classes, batch
    ("mnist1d default", "conv1d", (40,), 10, 64),
    ("fashion default", "convbn", (1, 28, 28), 10, 128),
    ("mlp (fashion)", "mlp", (1, 28, 28), 10, 128),
    ("vgg16 (cifar)", "vgg16", (3, 32, 32), 10, 128),
    ("preresnet164 (cifar)", "preresnet164", (3, 32, 32), 10, 128),
]
BIG = {"vgg16", "preresnet164"}


class _UncombinedCurve(Curve):
    """A curve step's code path with phi = the free bend: the floor of a curve step (not a curve)."""

    def _weighted_sum(self, c):
        return self.free_points.view(-1)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, device, iters: int) -> float:
    """Seconds per step, averaged over `iters` steps after a sync."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters


def bench(name, model_name, shape, classes, batch, device, repeats, iters, speed: Speed, with_simplex=False,
          with_subspace=False, with_floor=False, with_complex=False):
    torch.manual_seed(0)
    a = create_model(model_name, shape, classes).to(device)
    b = create_model(model_name, shape, classes).to(device)
    plain = speed.module(create_model(model_name, shape, classes).to(device).train())
    plain_forward = speed.compiled(plain)
    curve = Curve(a, b, kind="bezier", bends=1).to(device).train()
    if speed.compile:  # as modeconn.training.train.fit does for a curve
        curve.compile_network()
    x = speed.input(torch.randn(batch, *shape, device=device))
    y = torch.randint(0, classes, (batch,), device=device)
    wd = 5e-4
    opt_plain = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9, weight_decay=wd)
    opt_curve = torch.optim.SGD([curve.free_points], lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)

    def plain_step():
        with speed.autocast(device):
            loss = cross_entropy(plain_forward(x), y)
        opt_plain.zero_grad(set_to_none=True)
        loss.backward()
        opt_plain.step()

    def curve_step_of(curve, opt_curve):
        def curve_step():
            t = Curve.sample_t(gen)
            with speed.autocast(device):  # as modeconn.training.train.train_curve does
                loss = cross_entropy(curve(x, t, wd=wd), y)
            opt_curve.zero_grad(set_to_none=True)
            loss.backward()
            opt_curve.step()
        return curve_step

    steps = [plain_step, curve_step_of(curve, opt_curve)]
    def simplex_step_of(simplex):
        simplex = simplex.to(device).train()
        if speed.compile:
            simplex.compile_network()
        opt_simplex = torch.optim.SGD([simplex.free_points], lr=0.01, momentum=0.9)

        def simplex_step():
            weights = simplex.sample_weights(gen)
            with speed.autocast(device):  # as modeconn.training.train.train_simplex does
                loss = cross_entropy(simplex(x, weights, wd=wd), y)
                loss = loss - SPRO_VOLUME_WEIGHT * torch.log(simplex.volume() + VOLUME_FLOOR).to(loss.dtype)
            opt_simplex.zero_grad(set_to_none=True)
            loss.backward()
            opt_simplex.step()
        return simplex_step

    if with_simplex or with_complex:  # two more networks: a simplex's third vertex, a complex's fourth
        nets = [a, b] + [create_model(model_name, shape, classes).to(device) for _ in range(2)]
    if with_simplex:
        steps.append(simplex_step_of(Simplex(nets[:3], free=[False, False, True])))
    if with_complex:  # a one-bend polychain curve (0, 1, 2) grown by one shared vertex
        steps.append(simplex_step_of(Simplex(nets, free=[False, False, False, True], faces=[[0, 1, 3], [1, 2, 3]])))
    if with_subspace:
        line = Curve.through([a, b]).to(device).train()
        if speed.compile:
            line.compile_network()
        opt_line = torch.optim.SGD([line.free_points], lr=0.01, momentum=0.9, weight_decay=wd)
        ranges = matrix_ranges(line)

        def subspace_step():
            t = Curve.sample_t(gen)
            with speed.autocast(device):  # as modeconn.training.subspace.train_subspace does
                loss = cross_entropy(line(x, t), y) + SPREAD * squared_cosine(line, ranges).to(torch.float32)
            opt_line.zero_grad(set_to_none=True)
            loss.backward()
            opt_line.step()

        steps.append(subspace_step)
    if with_floor:
        floor = _UncombinedCurve(a, b, kind="bezier", bends=1).to(device).train()
        if speed.compile:
            floor.compile_network()
        steps.append(curve_step_of(floor, torch.optim.SGD([floor.free_points], lr=0.01, momentum=0.9)))
    for _ in range(max(2, iters // 2)):  # warm-up
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):  # interleave so machine noise hits all alike
        for step, recorded in zip(steps, times):
            recorded.append(time_steps(step, device, iters))
    ms = [statistics.median(t) * 1e3 for t in times]
    params = sum(q.numel() for q in plain.parameters())
    return (name, params, batch, ms[0], *[v for m in ms[1:] for v in (m, m / ms[0])])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=0, help="steps per repeat (0: chosen per model)")
    parser.add_argument("--vgg-batch", type=int, default=128, help="batch for the CIFAR-shaped models")
    parser.add_argument("--models", nargs="+", default=None, help="registry names to run (default: all)")
    parser.add_argument("--amp", choices=["bf16"], default=None)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--simplex", action="store_true", help="also time a simplex step (SPRO's second stage)")
    parser.add_argument("--subspace", action="store_true", help="also time a step of a line trained from scratch")
    parser.add_argument("--complex", action="store_true",
                        help="also time a step of a complex (a polychain curve grown by one shared vertex)")
    parser.add_argument("--floor", action="store_true",
                        help="also time a curve step without forming phi (its fixed overhead alone)")
    args = parser.parse_args()
    run(args, Speed(args.amp, args.channels_last, args.compile))


def run(args, speed: Speed):
    device = torch.device(args.device)
    tuned = keep_freed_memory()  # as the CLI does; applies to plain and curve steps alike
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"curve step (Bezier, 3 control points) vs plain step, torch {torch.__version__}, {where}, "
          f"glibc keeps freed memory: {tuned}, speed settings: {speed.to_dict()}")
    extra = [k for k, on in (("simplex", args.simplex), ("complex", args.complex), ("subspace", args.subspace),
                             ("floor", args.floor)) if on]
    print(f"{'model':20} {'params':>10} {'batch':>5} {'plain ms':>9} {'curve ms':>9} {'ratio':>6}"
          + "".join(f" {k + ' ms':>11} {'ratio':>6}" for k in extra))
    for name, model, shape, classes, batch in CASES:
        if args.models and model not in args.models:
            continue
        if model in BIG:
            batch = args.vgg_batch
        iters = args.iters or (3 if model in BIG and device.type == "cpu" else 20)
        row = bench(name, model, shape, classes, batch, device, args.repeats, iters, speed, args.simplex,
                    args.subspace, args.floor, args.complex)
        print(f"{row[0]:20} {row[1]:>10,} {row[2]:>5} {row[3]:>9.2f} {row[4]:>9.2f} {row[5]:>6.3f}"
              + "".join(f" {ms:>11.2f} {ratio:>6.3f}" for ms, ratio in zip(row[6::2], row[7::2])), flush=True)


if __name__ == "__main__":
    main()
