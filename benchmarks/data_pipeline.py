"""Images/s of the training data pipeline (device-resident CIFAR-shaped tensors, crop+flip on the
device) against images/s of the models' training steps at batch 128, measured in one run.

The pipeline must never be the bottleneck: its share of a step is pipeline time / step time.
Synthetic tensors of CIFAR's shape (the real files are not on these machines).
Usage: python benchmarks/data_pipeline.py [--device cpu|cuda] [--models vgg16 preresnet164] [--steps N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.nn.functional import cross_entropy

from modeconn.data import Dataset
from modeconn.data.augment import CropFlip
from modeconn.models import create_model
from modeconn.runtime.cpu_memory import keep_freed_memory


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_images_per_s(data: Dataset, batch: int, device, epochs: int) -> float:
    """Images/s of shuffled, augmented batches over whole epochs (the last batch is forced to exist)."""
    batches = data.train_batches(batch, shuffle=True, seed=0)
    rates = []
    for _ in range(epochs):
        _sync(device)
        start, n = time.perf_counter(), 0
        for x, y in batches:  # noqa: B007 -- the last x is waited on below
            n += len(y)
        x.sum().item()  # wait for the device to finish the last batch
        _sync(device)
        rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def step_images_per_s(name: str, data: Dataset, batch: int, device, steps: int) -> float:
    """Images/s of plain SGD training steps of model `name` (after 2 warm-up steps)."""
    torch.manual_seed(0)
    model = create_model(name, data.input_shape, data.num_classes).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = data.train_x[:batch]
    y = data.train_y[:batch]
    for i in range(steps + 2):
        if i == 2:
            _sync(device)
            start = time.perf_counter()
        loss = cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=["vgg16", "preresnet164"])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=3, help="pipeline epochs timed (median)")
    parser.add_argument("--steps", type=int, default=5, help="training steps timed per model")
    args = parser.parse_args()
    keep_freed_memory()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.images, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (args.images,), generator=g)
    data = Dataset("cifar-shaped", x, y, x[:1000], y[:1000], 10, train_transform=CropFlip()).to(device)

    pipe = pipeline_images_per_s(data, args.batch, device, args.epochs)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores, " \
        f"{torch.get_num_threads()} threads"
    print(f"{where}; torch {torch.__version__}; batch {args.batch}; {args.images} CIFAR-shaped images on {device}")
    print(f"{'what':28} {'images/s':>10} {'pipeline share of a step':>26}")
    print(f"{'pipeline (shuffle+crop+flip)':28} {pipe:>10.0f} {'':>26}")
    for name in args.models:
        step = step_images_per_s(name, data, args.batch, device, args.steps)
        print(f"{name + ' training step':28} {step:>10.0f} {step / pipe:>25.1%}")


if __name__ == "__main__":
    main()
