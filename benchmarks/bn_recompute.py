"""Seconds of one BatchNorm recomputation pass: modeconn's `recompute_bn` next to torch's `update_bn`, in one run.

Both make one pass over the same training batches (Fashion-MNIST, a seeded random order, batch 1000). torch's
`torch.optim.swa_utils.update_bn` puts the whole network in train mode and averages per-batch statistics with
equal weights, reading `num_batches_tracked` back to the host every batch; `recompute_bn` keeps dropout off,
pools per-example statistics and reads nothing back. The ratio is what the exact statistics cost.
Usage: python benchmarks/bn_recompute.py [--models convbn vgg16bn] [--repeats N] [--train-images N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.optim.swa_utils import update_bn

from modeconn.data import load_dataset
from modeconn.evaluation.batchnorm import recompute_bn
from modeconn.models import create_model

PASSES = {"update_bn": lambda net, batches: update_bn(batches, net), "recompute_bn": recompute_bn}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["convbn"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=60000)
    args = parser.parse_args()
    print(f"Fashion-MNIST, {args.train_images} training images, batch 1000, cpu, {torch.get_num_threads()} threads, "
          f"median of {args.repeats} interleaved repeats")
    print("| model | update_bn s | recompute_bn s | ratio |")
    print("|---|---|---|---|")
    for name in args.models:
        data = load_dataset("fashion-mnist-32" if name.startswith("vgg") else "fashion-mnist")
        data = data.subset(train=args.train_images)
        torch.manual_seed(0)
        net = create_model(name, data.input_shape, 10)
        batches = list(data.bn_batches(1000))
        times: dict[str, list[float]] = {which: [] for which in PASSES}
        for _ in range(args.repeats):
            for which, run in PASSES.items():
                start = time.perf_counter()
                with torch.no_grad():
                    run(net, batches)
                times[which].append(time.perf_counter() - start)
        theirs, ours = statistics.median(times["update_bn"]), statistics.median(times["recompute_bn"])
        print(f"| {name} | {theirs:.2f} | {ours:.2f} | {ours / theirs:.3f} |")


if __name__ == "__main__":
    main()
