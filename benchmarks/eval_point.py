"""Seconds to evaluate one curve point, next to the plain network's own passes, in one run.

A point = BN recomputation (one pass over the training set) + train and test evaluation.
Its floor is the plain network doing the same passes directly; the ratio shows the overhead.
With --dataset cifar-shaped the data are synthetic CIFAR-shaped tensors (--train-images,
--test-images; the paper's point is 50000 + 10000) and --model picks e.g. vgg16 or preresnet164;
smaller sizes print the seconds projected to 50k + 10k from the measured images/s.
Usage: python benchmarks/eval_point.py [--dataset fashion-mnist|mnist1d|cifar-shaped] [--model NAME]
       [--device cpu|cuda] [--repeats N] [--train-images N --test-images N]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from modeconn import Curve
from modeconn.data import Dataset, load_dataset
from modeconn.evaluation.batchnorm import has_batchnorm, recompute_bn
from modeconn.evaluation.evaluate import evaluate
from modeconn.evaluation.pointwise import EvalSettings, PointEvaluator
from modeconn.models import create_model
from modeconn.recipes import RECIPES
from modeconn.runtime.cpu_memory import keep_freed_memory


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="registry name (default: the dataset's default)")
    parser.add_argument("--train-images", type=int, default=50000, help="cifar-shaped only")
    parser.add_argument("--test-images", type=int, default=10000, help="cifar-shaped only")
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    keep_freed_memory()
    device = torch.device(args.device)
    if args.dataset == "cifar-shaped":
        g = torch.Generator().manual_seed(0)
        n, m = args.train_images, args.test_images
        data = Dataset("cifar-shaped", torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g),
                       torch.randn(m, 3, 32, 32, generator=g), torch.randint(0, 10, (m,), generator=g), 10).to(device)
    else:
        data = load_dataset(args.dataset).to(device)
    name = args.model or RECIPES[args.dataset].model
    torch.manual_seed(0)
    a, b = (create_model(name, data.input_shape, 10).to(device) for _ in range(2))
    curve = Curve(a, b).to(device)
    settings = EvalSettings(batch_size=args.batch_size)
    evaluator = PointEvaluator(copy.deepcopy(a), data, settings)
    plain = copy.deepcopy(a)
    bn_b, tr_b, te_b = settings.bn_batches(data), settings.train_batches(data), data.test_batches(args.batch_size)

    rows = {"plain BN pass": [], "plain train+test eval": [], "curve point (all)": []}
    for i in range(args.repeats + 1):
        bn = timed(lambda: recompute_bn(plain, bn_b), device)
        ev = timed(lambda: (evaluate(plain, tr_b), evaluate(plain, te_b)), device)
        pt = timed(lambda: evaluator(curve.weights(0.3).detach(), curve.state_at(0.3)), device)
        if i:  # the first round warms up
            rows["plain BN pass"].append(bn)
            rows["plain train+test eval"].append(ev)
            rows["curve point (all)"].append(pt)
    med = {k: statistics.median(v) for k, v in rows.items()}
    n_train, n_test = len(data.train_x), len(data.test_x)
    print(f"{args.dataset}, model {name}, {n_train} train + {n_test} test, {device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for k, v in med.items():
        print(f"{k:24} {v:8.2f} s")
    floor = med["plain BN pass"] + med["plain train+test eval"]
    print(f"{'point / (BN + eval)':24} {med['curve point (all)'] / floor:8.3f}")
    if args.dataset == "cifar-shaped" and (n_train, n_test) != (50000, 10000):
        # A point passes over the training set for BN (if the network has BN) and for train metrics,
        # and over the test set once.
        passes = 2 if has_batchnorm(plain) else 1
        per_image = med["curve point (all)"] / (passes * n_train + n_test)
        print(f"{'projected 50k+10k point':24} {per_image * (passes * 50000 + 10000):8.2f} s "
              f"(from {1 / per_image:.0f} images/s)")


if __name__ == "__main__":
    main()
