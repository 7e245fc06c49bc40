"""Streamed data against data in memory, in one run: a training epoch, and one curve point (BN recomputation plus
train and test evaluation), over the same tensors, in memory (`Dataset`) and read by a DataLoader
(`StreamedData`, num_workers=0): over a `TensorDataset` (read a batch at a time, one gather per tensor), and over
a map-style dataset of the same tensors that is not one (indexed example by example and collated, as any dataset
that reads files is).

Prints median seconds of each and the streamed/in-memory ratios. The same examples are visited in the same order,
so the two do exactly the same arithmetic: the ratio is the cost of the DataLoader.
Usage: python benchmarks/stream.py [--dataset fashion-mnist|mnist1d] [--model NAME] [--repeats N]
       [--train-images N] [--batch-size N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from modeconn.config import TrainConfig
from modeconn.data import StreamedData, load_dataset
from modeconn.evaluation.evaluate import metrics_with_bn
from modeconn.models import create_model
from modeconn.recipes import RECIPES
from modeconn.training.train import train_network


class Examples(TensorDataset):
    """The same tensors, but not a TensorDataset to the DataLoader: read example by example."""


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--model", default=None, help="registry name (default: the dataset's recipe)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=10000, help="training examples per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    memory = load_dataset(args.dataset).subset(train=args.train_images)
    tensors = StreamedData(f"{args.dataset}-stream", DataLoader(TensorDataset(memory.train_x, memory.train_y)),
                           TensorDataset(memory.test_x, memory.test_y), memory.num_classes)
    examples = StreamedData(f"{args.dataset}-examples", DataLoader(Examples(memory.train_x, memory.train_y)),
                            Examples(memory.test_x, memory.test_y), memory.num_classes)
    kinds = {"memory": memory, "tensors": tensors, "examples": examples}
    name = args.model or RECIPES[args.dataset].model
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size)

    def epoch(data):
        torch.manual_seed(0)
        model = create_model(name, memory.input_shape, memory.num_classes)
        return lambda: train_network(model, data, cfg, progress=False)

    def point(data):
        torch.manual_seed(0)
        model = create_model(name, memory.input_shape, memory.num_classes)
        return lambda: metrics_with_bn(model, data, 1000)

    rows = []
    for label, make in (("training epoch", epoch), ("BN recompute + evaluation", point)):
        times: dict[str, list[float]] = {kind: [] for kind in kinds}
        for _ in range(args.repeats):  # alternated, so drift on a shared machine hits all alike
            for kind, data in kinds.items():
                times[kind].append(seconds(make(data)))
        rows.append((label, *(statistics.median(times[kind]) for kind in kinds)))
    print(f"{args.dataset}, {name}, {args.train_images} training examples, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"| {'pass':<26} | in memory (s) | TensorDataset (s) | ratio | per example (s) | ratio |")
    print(f"|{'-' * 28}|---------------|-------------------|-------|-----------------|-------|")
    for label, m, t, e in rows:
        print(f"| {label:<26} | {m:13.3f} | {t:17.3f} | {t / m:5.2f} | {e:15.3f} | {e / m:5.2f} |")


if __name__ == "__main__":
    main()
