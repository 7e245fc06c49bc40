"""Wall time of `modeconn plane` on one process against 2 torchrun processes (gloo) on this CPU (--device cpu).

Trains two networks and a Bezier curve once (into --work), then times the plane command end to
end (start-up included) for each way of running it, `--repeats` times, and prints medians.

    python benchmarks/plane_ranks.py --grids 11 31 --repeats 3
    python benchmarks/plane_ranks.py --dataset fashion-mnist --grids 3 --repeats 1 --samples 2000
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = {
    "1 process, 2 threads": (["-m", "modeconn"], "2"),
    "1 process, 1 thread": (["-m", "modeconn"], "1"),
    "torchrun 2 x 1 thread": (["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                               "-m", "modeconn"], "1"),
}


def run(args, threads: str, cwd: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grids", type=int, nargs="+", default=[11, 31])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", default=None, help="folder for the networks and planes (default: a temp dir)")
    parser.add_argument("--dataset", default="mnist1d", help="mnist1d (default) or fashion-mnist (1-epoch networks)")
    parser.add_argument("--samples", type=int, default=None, help="--bn-samples and --train-samples of each point")
    args = parser.parse_args()
    quick = ["--epochs", "1"] if args.dataset == "fashion-mnist" else []
    samples = ["--bn-samples", str(args.samples), "--train-samples", str(args.samples)] if args.samples else []
    work = Path(args.work or tempfile.mkdtemp(prefix="plane-ranks-"))
    modeconn = [sys.executable, "-m", "modeconn"]
    for name, seed in (("a", 0), ("b", 1)):
        if not (work / name / "run.json").exists():
            subprocess.run([*modeconn, "train", "--dataset", args.dataset,
                            "--out", str(work / name), "--seed", str(seed),
                            "--quiet", "--device", "cpu", *quick], check=True)
    if not (work / "ab" / "run.json").exists():
        subprocess.run([*modeconn, "connect", "--start", str(work / "a"), "--end", str(work / "b"),
                        "--out", str(work / "ab"), "--quiet", "--device", "cpu", *quick], check=True)

    print(f"machine: {os.cpu_count()} CPUs; {args.dataset}, default model, plane through a Bezier curve, chunk 1, "
          f"BN/train samples: {args.samples or 'all'}")
    print(f"{'grid':>5} {'points':>7} {'mode':<24} {'median s':>9} {'points/s':>9} {'speed-up':>9}")
    for grid in args.grids:
        base = None
        for mode, (prefix, threads) in MODES.items():
            times = []
            for r in range(args.repeats):
                out = work / f"plane-{grid}-{threads}-{len(prefix)}-{r}"
                times.append(run([*prefix, "plane", "--curve", str(work / "ab"), "--grid", str(grid),
                                  "--out", str(out), "--quiet", "--force", "--device", "cpu", *samples], threads, work))
            med = statistics.median(times)
            base = base or med
            print(f"{grid:>5} {grid * grid:>7} {mode:<24} {med:>9.2f} {grid * grid / med:>9.1f} {base / med:>8.2f}x")


if __name__ == "__main__":
    main()
