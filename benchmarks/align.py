"""Seconds for weight matching (Git Re-Basin) of the CIFAR models, next to one training step of each,
and for activation matching of a Fashion-MNIST-sized MLP, measured in one run.

Usage: python benchmarks/align.py [--models vgg16 preresnet164 wrn28x10] [--batch 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.nn.functional import cross_entropy

from modeconn.alignment.matching import align
from modeconn.models import create_model
from modeconn.runtime.cpu_memory import keep_freed_memory


def step_seconds(model, batch: int, repeats: int) -> float:
    """Median seconds of one SGD step on a CIFAR-shaped batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    times = []
    for _ in range(repeats + 1):
        began = time.perf_counter()
        loss = cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])  # the first step warms up


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "preresnet164", "wrn28x10"])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    print(f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          "two independently initialised networks each")
    print(f"{'model':14} {'params':>11} {'groups':>6} {'passes':>6} {'matching s':>10} {'step s':>8} {'ratio':>7}")
    for name in args.models:
        torch.manual_seed(0)
        a, b = create_model(name, (3, 32, 32), 10), create_model(name, (3, 32, 32), 10)
        x = torch.randn(2, 3, 32, 32)
        seconds = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            _, info = align(a, b, "weights", example_input=x)
            seconds.append(time.perf_counter() - began)
        match, step = statistics.median(seconds), step_seconds(create_model(name, (3, 32, 32), 10), args.batch,
                                                               args.repeats)
        params = sum(p.numel() for p in a.parameters())
        print(f"{name:14} {params:>11,} {len(info.groups):>6} {info.passes:>6} {match:>10.2f} {step:>8.3f} "
              f"{match / step:>6.1f}x")
    torch.manual_seed(0)
    a, b = (create_model("mlp", (1, 28, 28), 10, hidden=512, depth=3) for _ in range(2))
    batches = [(torch.randn(1000, 1, 28, 28), None) for _ in range(60)]  # 60k images, Fashion-MNIST's train set
    began = time.perf_counter()
    align(a, b, "activations", batches=batches)
    print(f"activation matching, MLP 3x512 on 60,000 Fashion-MNIST-shaped images: {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
