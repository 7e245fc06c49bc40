"""The command line: a thin layer over the Python API, one subcommand per task."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ModeconnError


def _train_config(args, defaults):
    from .train import TrainConfig

    return TrainConfig(epochs=args.epochs or defaults.epochs, lr=args.lr or defaults.lr,
                       momentum=defaults.momentum, wd=defaults.wd if args.wd is None else args.wd,
                       batch_size=args.batch_size or defaults.batch_size, seed=args.seed)


def cmd_train(args):
    from .runs import TRAIN_DEFAULTS, train_run
    from .train import TrainConfig

    cfg = _train_config(args, TRAIN_DEFAULTS.get(args.dataset, TrainConfig()))
    info = train_run(args.dataset, args.out, model=args.model, cfg=cfg, data_dir=args.data_dir,
                     device=args.device, resume=args.resume, progress=not args.quiet,
                     keep_epochs=tuple(args.keep_epochs))
    print(f"{args.out}: test error {info['test_err']:.4f}, test loss {info['test_loss']:.4f} "
          f"({info['seconds']:.1f} s)")


def cmd_connect(args):
    from .runs import CONNECT_DEFAULTS, network_info, connect_run
    from .train import TrainConfig

    dataset = args.dataset or network_info(args.start).get("dataset")
    cfg = _train_config(args, CONNECT_DEFAULTS.get(dataset, TrainConfig()))
    info = connect_run(args.start, args.end, args.out, kind=args.curve, bends=args.bends,
                       free_endpoints=args.free_endpoints, cfg=cfg, dataset=args.dataset, model=args.model,
                       data_dir=args.data_dir, device=args.device, resume=args.resume, progress=not args.quiet)
    print(f"{args.out}: curve midpoint test error {info['midpoint_test_err']:.4f} "
          f"(BN recomputed), length {info['length']:.3f} ({info['seconds']:.1f} s)")


def cmd_eval_curve(args):
    from .runs import eval_curve_run

    r = eval_curve_run(args.run, points=args.points, out=args.out, bn_samples=args.bn_samples,
                       train_samples=args.train_samples, batch_size=args.batch_size, device=args.device,
                       force=args.force, progress=not args.quiet)
    s = r["summary"]
    print(f"test error max: curve {s['curve']['test_err']['max']:.4f}, line {s['line']['test_err']['max']:.4f}; "
          f"test-error barrier: curve {s['barriers']['curve']['test_err']:.4f}, "
          f"line {s['barriers']['line']['test_err']:.4f}\nwrote {args.out or args.run}/curve_eval.json and .png")


def cmd_eval_line(args):
    from .runs import eval_line_run

    r = eval_line_run(args.start, args.end, out=args.out, points=args.points, bn_samples=args.bn_samples,
                      train_samples=args.train_samples, batch_size=args.batch_size, dataset=args.dataset,
                      model=args.model, device=args.device, force=args.force, progress=not args.quiet)
    s = r["summary"]
    print(f"line: test error max {s['line']['test_err']['max']:.4f}, test-error barrier "
          f"{s['barriers']['line']['test_err']:.4f}, train-loss barrier {s['barriers']['line']['train_loss']:.4f}"
          f"\nwrote {r['out']}/line_eval.json and .png")


def cmd_plane(args):
    from .plane_run import plane_run

    r = plane_run(args.out, points=args.points, curve_run=args.curve, bend=args.bend, grid=args.grid,
                  margin=args.margin, bn_samples=args.bn_samples, train_samples=args.train_samples,
                  batch_size=args.batch_size, chunk=args.chunk, device=args.device, force=args.force,
                  progress=not args.quiet)
    a = r["arrays"]
    print(f"plane {len(a['xs'])}x{len(a['ys'])}: train loss {a['train_loss'].min():.4g}..{a['train_loss'].max():.4g}, "
          f"test error {a['test_err'].min():.4f}..{a['test_err'].max():.4f}\nwrote {args.out}/plane.npz, plane.json, plane.png")


def cmd_fge(args):
    from .fge import FGEConfig, fge_run

    cfg = FGEConfig(epochs=args.epochs, cycle=args.cycle, lr1=args.lr1, lr2=args.lr2, wd=args.wd,
                    batch_size=args.batch_size, seed=args.seed)
    r = fge_run(args.start, args.out, cfg, save_snapshots=not args.no_snapshots, device=args.device,
                resume=args.resume, progress=not args.quiet)
    last = r["snapshots"][-1] if r["snapshots"] else None
    if last:
        print(f"FGE: {len(r['snapshots'])} snapshots; ensemble test error {last['ensemble_test_err']:.4f}, "
              f"NLL {last['ensemble_test_nll']:.4f} (start network: {r['start_test_err']}, {r['start_test_loss']})")
    print(f"wrote {args.out}/fge.json and fge.png")


def cmd_ensemble(args):
    from .runs import ensemble_curve_run

    r = ensemble_curve_run(args.curve, args.points, out=args.out, device=args.device, force=args.force,
                           progress=not args.quiet)
    e = r["ensemble"]
    print(f"curve ensemble of {args.points}: test error {e['err']:.4f}, NLL {e['nll']:.4f}, ECE {e['ece']:.4f}"
          f"\nwrote {r['out']}")


def cmd_budget(args):
    from .budget import budget_run

    budget_run(args.dataset, args.out, args.epochs, seeds=args.seeds, cycle=args.cycle, lr1=args.lr1,
                       lr2=args.lr2, lr=args.lr, model=args.model, train_samples=args.train_samples,
                       data_dir=args.data_dir, device=args.device, progress=not args.quiet)
    print((Path(args.out) / "budget.md").read_text())


def cmd_demo(args):
    import time

    from .demo import run_demo

    start = time.time()
    page = run_demo(args.out, device=args.device, progress=not args.quiet)
    print(f"demo finished in {time.time() - start:.0f} s; results in {args.out}; open {page}")


def cmd_report(args):
    from .report import render_report

    print(f"wrote {render_report(args.dir)}")


def _eval_options(p, along: bool = True):
    if along:
        p.add_argument("--points", type=int, default=61, help="evenly spaced t in [0, 1] (paper: 61)")
    p.add_argument("--bn-samples", type=int, default=None,
                   help="recompute BatchNorm on a random subset of this many training examples "
                        "(an approximation; default: the exact full pass)")
    p.add_argument("--train-samples", type=int, default=None, help="train metrics on a random subset")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument("--out", default=None, required=not along)
    p.add_argument("--force", action="store_true", help="replace existing evaluation files")


def _common(p, training=True):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    p.add_argument("--data-dir", default=None, help="dataset folder (Fashion-MNIST: /usr/share/datasets/fashion-mnist)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--amp", choices=["bf16"], default=None, help="bf16 autocast for training and evaluation")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for image batches and conv weights")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in training steps")
    if training:
        p.add_argument("--epochs", type=int, default=None)
        p.add_argument("--lr", type=float, default=None, help="initial learning rate")
        p.add_argument("--wd", type=float, default=None, help="weight decay")
        p.add_argument("--batch-size", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--resume", action="store_true", help="continue an unfinished run in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modeconn", description="Mode connectivity and fast ensembling for PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one endpoint network")
    p.add_argument("--dataset", default="mnist1d", help="mnist1d (default) or fashion-mnist")
    p.add_argument("--model", default=None, help="registry name (default: the dataset's default model)")
    p.add_argument("--keep-epochs", type=int, nargs="*", default=[],
                   help="also keep the state after these epochs as run folders OUT/epochN (e.g. FGE's start at 0.8B)")
    p.add_argument("--out", required=True)
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("connect", help="fit a low-loss curve between two trained networks")
    p.add_argument("--start", required=True, help="run folder or weights file (.safetensors or .pt)")
    p.add_argument("--end", required=True)
    p.add_argument("--curve", default="bezier", choices=["bezier", "polychain"])
    p.add_argument("--bends", type=int, default=1, help="free control points between the endpoints (0: the line)")
    p.add_argument("--free-endpoints", action="store_true", help="train the endpoints too")
    p.add_argument("--dataset", default=None, help="override the endpoints' dataset")
    p.add_argument("--model", default=None, help="override the endpoints' model")
    p.add_argument("--out", required=True)
    _common(p)
    p.set_defaults(func=cmd_connect)

    p = sub.add_parser("eval-curve", help="metrics along a curve and along the line between its endpoints")
    p.add_argument("run", help="a curve run folder (from connect)")
    _eval_options(p)
    _common(p, training=False)
    p.set_defaults(func=cmd_eval_curve)

    p = sub.add_parser("eval-line", help="metrics along the straight line between two networks")
    p.add_argument("start")
    p.add_argument("end")
    p.add_argument("--dataset", default=None)
    p.add_argument("--model", default=None)
    _eval_options(p)
    _common(p, training=False)
    p.set_defaults(func=cmd_eval_line)

    p = sub.add_parser("plane", help="metrics over a grid in the plane through three networks or a curve")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--points", nargs=3, metavar="RUN", help="three networks: w1 w2 w3")
    src.add_argument("--curve", help="a curve run: the plane through its start, end and a bend")
    p.add_argument("--bend", type=int, default=None, help="which bend (1..bends) spans the plane; default the middle")
    p.add_argument("--grid", type=int, default=21, help="grid points per side (paper: 21)")
    p.add_argument("--margin", type=float, default=0.2, help="margin on each side, as a fraction of the span")
    p.add_argument("--chunk", type=int, default=None,
                   help="grid points evaluated at once with torch.func.vmap (default 1; measured slower on CPU, may pay for small nets on a GPU)")
    _eval_options(p, along=False)
    _common(p, training=False)
    p.set_defaults(func=cmd_plane)

    p = sub.add_parser("fge", help="Fast Geometric Ensembling from a trained network")
    p.add_argument("--start", required=True, help="a run folder from train (its optimizer state is restored)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=20, help="epochs of cyclic training")
    p.add_argument("--cycle", type=int, default=4, help="cycle length in epochs (even)")
    p.add_argument("--lr1", type=float, default=0.05, help="high learning rate (cycle start and end)")
    p.add_argument("--lr2", type=float, default=0.0005, help="low learning rate (cycle midpoint, snapshots)")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-snapshots", action="store_true", help="do not save snapshot weights")
    p.add_argument("--resume", action="store_true")
    _common(p, training=False)
    p.set_defaults(func=cmd_fge)

    p = sub.add_parser("ensemble", help="ensemble of networks sampled along a trained curve")
    p.add_argument("--curve", required=True)
    p.add_argument("--points", type=int, default=5, help="evenly spaced t in [0, 1]")
    p.add_argument("--out", default=None, help="JSON file (default: CURVE/ensemble.json)")
    p.add_argument("--force", action="store_true")
    _common(p, training=False)
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("budget", help="FGE vs single network vs independent ensembles at 1B and 2B, over seeds")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default=None)
    p.add_argument("--epochs", type=int, required=True, help="B: epochs of one network's training")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cycle", type=int, default=2)
    p.add_argument("--lr", type=float, default=None, help="initial lr of normal training (default per dataset)")
    p.add_argument("--lr1", type=float, default=0.1,
                   help="FGE high lr (0.1: on Fashion-MNIST 0.05 left the snapshots nearly identical)")
    p.add_argument("--lr2", type=float, default=0.0005)
    p.add_argument("--train-samples", type=int, default=None, help="train on the first N training examples")
    p.add_argument("--out", required=True)
    _common(p, training=False)
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("demo", help="the whole pipeline on MNIST-1D, ending in report.html")
    p.add_argument("--out", default="runs/demo")
    _common(p, training=False)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("report", help="render DIR/report.html from the results under DIR")
    p.add_argument("dir")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun -m modeconn -- connect --start ...`: the `--` keeps torchrun off our options
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    import contextlib
    import os

    from . import distributed, speed
    from .cpu_memory import keep_freed_memory
    from .speed import Speed

    keep_freed_memory()
    quiet_rank = not distributed.is_main()  # under torchrun, rank 0 alone reports
    if quiet_rank and hasattr(args, "quiet"):
        args.quiet = True
    where = f" (rank {distributed.rank()})" if distributed.launched() else ""
    try:
        sink = open(os.devnull, "w") if quiet_rank else contextlib.nullcontext(sys.stdout)
        settings = Speed(getattr(args, "amp", None), getattr(args, "channels_last", False), getattr(args, "compile", False))
        with sink as out, contextlib.redirect_stdout(out), speed.using(settings):
            args.func(args)
    except ModeconnError as exc:
        print(f"modeconn {args.command}: error{where}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"modeconn {args.command}: interrupted; rerun with --resume where the command offers it", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
