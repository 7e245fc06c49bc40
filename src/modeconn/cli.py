"""The command line: argparse over the command layer (modeconn.commands), one subcommand per command.

Options left out are None here; the commands take their defaults from the per-dataset recipes.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys

from .errors import ModeconnError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2 as usual."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _summary(command: str, result, args) -> str:
    """What a finished command prints: where it wrote and the headline figures."""
    if command == "train":
        return (f"{args.out}: test error {result['test_err']:.4f}, test loss {result['test_loss']:.4f} "
                f"({result['seconds']:.1f} s)")
    if command == "connect":
        return (f"{args.out}: curve midpoint test error {result['midpoint_test_err']:.4f} (BN recomputed), "
                f"length {result['length']:.3f} ({result['seconds']:.1f} s)")
    if command == "align":
        return (f"{args.out}: {args.end} aligned to {args.start} by {result.method} matching in {result.passes} "
                f"pass(es), objective {result.objective_before:.4g} -> {result.objective_after:.4g} "
                f"({result.seconds:.1f} s); {len(result.groups)} groups, {len(result.fixed)} ops left fixed")
    if command == "connectivity":
        rows = [f"  {name:22} test-error barrier {result.stat(name, 'test_err', 'barrier'):.4f}, train-loss barrier "
                f"{result.stat(name, 'train_loss', 'barrier'):.4f}" for name in result.paths()]
        return "\n".join(rows + [f"wrote {args.out}/paths.json and paths.png"])
    if command == "eval-curve":
        return (f"test error max: curve {result.stat('curve', 'test_err', 'max'):.4f}, line "
                f"{result.stat('line', 'test_err', 'max'):.4f}; test-error barrier: curve "
                f"{result.stat('curve', 'test_err', 'barrier'):.4f}, line "
                f"{result.stat('line', 'test_err', 'barrier'):.4f}"
                f"\nwrote {args.out or args.run}/curve_eval.json and .png")
    if command == "eval-line":
        from .commands.measure import line_out

        return (f"line: test error max {result.stat('line', 'test_err', 'max'):.4f}, test-error barrier "
                f"{result.stat('line', 'test_err', 'barrier'):.4f}, train-loss barrier "
                f"{result.stat('line', 'train_loss', 'barrier'):.4f}"
                f"\nwrote {line_out(args.start, args.end, args.out)}/line_eval.json and .png")
    if command == "plane":
        m = result.metrics
        return (f"plane {len(result.xs)}x{len(result.ys)}: train loss "
                f"{m['train_loss'].min():.4g}..{m['train_loss'].max():.4g}, "
                f"test error {m['test_err'].min():.4f}..{m['test_err'].max():.4f}"
                f"\nwrote {args.out}/plane.npz, plane.json, plane.png")
    if command == "landscape":
        m = result.metrics
        return (f"{result.dims}-D slice, {'x'.join(str(n) for n in m['train_loss'].shape)} points: train loss "
                f"{m['train_loss'].min():.4g}..{m['train_loss'].max():.4g}, test error {m['test_err'].min():.4f}.."
                f"{m['test_err'].max():.4f}\nwrote {args.out}/landscape.npz, landscape.json, landscape.png")
    if command == "curvature":
        rows = [f"  {name} t={t:.2f}: top eigenvalues {', '.join(f'{v:.4g}' for v in r['eigenvalues'])}"
                + (f", trace {r['trace']:.4g} ± {r['trace_stderr']:.2g}" if r["trace"] is not None else "")
                + ("  (estimates: Lanczos did not converge within --steps)" if r.get("converged") is False else "")
                for name, rs in result["paths"].items() for t, r in zip(result["t"], rs)]
        return "\n".join(rows + [f"wrote {args.out or args.run}/curvature.json and curvature.png"])
    if command == "eval-simplex":
        t = result["summary"]["test_err"]
        return (f"{result['samples']} points: test error mean {t['mean']:.4f}, 5-95% {t['q05']:.4f}..{t['q95']:.4f}, "
                f"max {t['max']:.4f}\nwrote {args.out or args.run}/simplex_eval.json")
    if command == "simplex":
        centre = (f"centroid test error {result['centroid_test_err']:.4f}" if "centroid_test_err" in result else
                  "face centres' test errors " + ", ".join(f"{e:.4f}" for e in result["face_centres_test_err"]))
        return (f"{args.out}: {result['vertices']} vertices, volume {result['volume']:.4g}; {centre} "
                f"(BN recomputed), vertices "
                + ", ".join(f"{result['metrics'][f'vertex{k}']['test_err']:.4f}" for k in range(result['vertices']))
                + f" ({result['seconds']:.1f} s)")
    if command == "subspace":
        return (f"{args.out}: {args.shape} from scratch, midpoint test error {result['midpoint_test_err']:.4f} "
                "(BN recomputed; kept as the network run " f"{args.out}/midpoint), vertices "
                + ", ".join(f"{result['metrics'][f'vertex{k}']['test_err']:.4f}"
                            for k in range(len(result['distances'])))
                + f" ({result['seconds']:.1f} s)")
    if command == "instability":
        rows = [f"  spawn {r['spawn']:>3}: test-error barrier {r['test_err_barrier']:.4f}, train-loss barrier "
                f"{r['train_loss_barrier']:.4f}{'  (stable)' if r['stable'] else ''}" for r in result["per_spawn"]]
        return "\n".join(rows + [f"first stable spawn epoch: {result['first_stable_spawn']}",
                                  f"wrote {args.out}/instability.json and instability.png"])
    if command == "fge":
        last = result.snapshots[-1]
        return (f"FGE: {len(result.snapshots)} snapshots; ensemble test error {last['ensemble_test_err']:.4f}, "
                f"NLL {last['ensemble_test_nll']:.4f} "
                f"(start network: {result.start_test_err}, {result.start_test_loss})"
                f"\nwrote {args.out}/fge.json and fge.png")
    if command == "ensemble":
        e = result.ensemble
        return (f"{'curve' if args.curve else 'simplex'} ensemble of {args.points}: test error {e.err:.4f}, "
                f"NLL {e.nll:.4f}, ECE {e.ece:.4f}")
    if command == "budget":
        from pathlib import Path

        return (Path(args.out) / "budget.md").read_text()
    return f"wrote {result}"


def _eval_options(p, along: bool = True, repair: bool = True, out_required: bool = False):
    if along:
        p.add_argument("--points", type=int, default=61, help="evenly spaced t in [0, 1] (paper: 61)")
    if repair:
        p.add_argument("--repair", action="store_true",
                       help="REPAIR each point's unit statistics (networks without BatchNorm; Jordan et al. 2023)")
    p.add_argument("--bn-samples", type=int, default=None,
                   help="recompute BatchNorm on a random subset of this many training examples "
                        "(an approximation; default: the exact full pass)")
    p.add_argument("--train-samples", type=int, default=None, help="train metrics on a random subset")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument("--out", default=None, required=out_required)
    p.add_argument("--force", action="store_true", help="replace existing evaluation files")


def _common(p, training: bool = True, data: bool = True):
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: cuda if present)")
    if data:
        p.add_argument("--data-dir", default=None,
                       help="dataset folder (default: the one recorded in the run, or the dataset's own)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--amp", choices=["bf16"], default=None, help="bf16 autocast for training and evaluation")
    p.add_argument("--channels-last", action="store_true", help="NHWC memory format for image batches and conv weights")
    p.add_argument("--compile", action="store_true", help="torch.compile the network in training steps")
    if training:
        p.add_argument("--epochs", type=int, default=None, help="default: the dataset's recipe")
        p.add_argument("--lr", type=float, default=None, help="initial learning rate (default: the recipe's)")
        p.add_argument("--wd", type=float, default=None, help="weight decay (default: the recipe's)")
        p.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--resume", action="store_true",
                       help="continue an unfinished run in --out with the same settings")


def _version() -> str:
    import platform

    import torch

    from .version import __version__
    return f"modeconn {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="modeconn", description="Mode connectivity and fast ensembling for PyTorch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("train", help="train one endpoint network")
    p.add_argument("--dataset", default="mnist1d",
                   help="mnist1d (default), fashion-mnist, fashion-mnist-32, cifar10, cifar100")
    p.add_argument("--model", default=None, help="registry name (default: the dataset's default model)")
    p.add_argument("--keep-epochs", type=int, nargs="*", default=[],
                   help="also keep the state after these epochs as run folders OUT/epochN (e.g. FGE's start at 0.8B)")
    p.add_argument("--keep-every", type=int, default=None,
                   help="also keep every K-th epoch as OUT/epochN (a trajectory for landscape --directions pca)")
    p.add_argument("--out", required=True)
    _common(p)

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

    p = sub.add_parser("align", help="permute a network's hidden units to match another's (Git Re-Basin)")
    p.add_argument("--start", required=True, help="network a: the labelling to match")
    p.add_argument("--end", required=True, help="network b: the network to relabel")
    p.add_argument("--method", default="weights", choices=["weights", "activations"],
                   help="weight matching (default) or activation matching on training data")
    p.add_argument("--seed", type=int, default=0, help="order of the groups in weight matching")
    p.add_argument("--train-samples", type=int, default=None, help="examples activation matching measures")
    p.add_argument("--out", required=True)
    _common(p, training=False)

    p = sub.add_parser("connectivity", help="plain vs weight- and activation-aligned lines, REPAIR, optional curves")
    p.add_argument("start")
    p.add_argument("end")
    p.add_argument("--curve", default=None, choices=["bezier", "polychain"],
                   help="also train a curve to END and one to the weight-aligned END")
    p.add_argument("--epochs", type=int, default=None, help="curve training epochs (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="curve learning rate (default: the recipe's)")
    _eval_options(p, repair=False, out_required=True)  # REPAIR is one of the paths compared
    _common(p, training=False)

    p = sub.add_parser("eval-curve", help="metrics along a curve and along the line between its endpoints")
    p.add_argument("run", help="a curve run folder (from connect)")
    _eval_options(p)
    _common(p, training=False)

    p = sub.add_parser("eval-line", help="metrics along the straight line between two networks")
    p.add_argument("start")
    p.add_argument("end")
    p.add_argument("--dataset", default=None)
    p.add_argument("--model", default=None)
    _eval_options(p)
    _common(p, training=False)

    p = sub.add_parser("plane", help="metrics over a grid in the plane through three networks or a curve")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--points", nargs=3, metavar="RUN", help="three networks: w1 w2 w3")
    src.add_argument("--curve", help="a curve run: the plane through its start, end and a bend")
    p.add_argument("--bend", type=int, default=None, help="which bend (1..bends) spans the plane; default the middle")
    p.add_argument("--grid", type=int, default=21, help="grid points per side (paper: 21)")
    p.add_argument("--margin", type=float, default=0.2, help="margin on each side, as a fraction of the span")
    p.add_argument("--chunk", type=int, default=None,
                   help="grid points evaluated at once with torch.func.vmap (default 1; measured slower on CPU, "
                        "may pay for small nets on a GPU)")
    _eval_options(p, along=False, out_required=True)
    _common(p, training=False)

    p = sub.add_parser("landscape", help="loss and error over a 1-D or 2-D slice around a network (Li et al. 2018)")
    p.add_argument("run", nargs="?", default=None, help="the network at the centre (or --curve RUN --t T)")
    p.add_argument("--curve", default=None, help="a curve run: the centre is its point at --t")
    p.add_argument("--t", type=float, default=None, help="the curve's point at the centre (default 0.5)")
    p.add_argument("--dims", type=int, default=2, help="1 (a line) or 2 (a plane)")
    p.add_argument("--grid", type=int, default=21, help="grid points per direction")
    p.add_argument("--span", type=float, default=1.0,
                   help="half-width of the grid: in direction units (random), or times the trajectory's extent (pca)")
    p.add_argument("--directions", choices=["random", "pca"], default="random",
                   help="filter-normalised random directions, or the principal directions of --trajectory")
    p.add_argument("--trajectory", default=None, help="a network run trained with --keep-every K (for pca)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")
    p.add_argument("--bn-directions", action="store_true",
                   help="move biases and BatchNorm parameters too (default: they stay, as in Li et al.)")
    p.add_argument("--chunk", type=int, default=None, help="grid points evaluated at once with torch.func.vmap")
    _eval_options(p, along=False, repair=False, out_required=True)
    _common(p, training=False)

    p = sub.add_parser("curvature", help="top Hessian eigenvalues and trace of the train loss along a curve, "
                                         "or at a network")
    p.add_argument("run", help="a curve run (its points and the line between its endpoints) or a network run")
    p.add_argument("--points", type=int, default=None, help="evenly spaced t in [0, 1] along a curve (default 11)")
    p.add_argument("--top", type=int, default=3, help="how many of the largest eigenvalues (Lanczos)")
    p.add_argument("--trace", action="store_true", help="also estimate the Hessian's trace (Hutch++)")
    p.add_argument("--probes", type=int, default=None, help="Hessian-vector products for --trace (default 100)")
    p.add_argument("--steps", type=int, default=100, help="at most this many Lanczos steps per point")
    p.add_argument("--seed", type=int, default=0, help="seed of the Lanczos start and the trace's probes")
    _eval_options(p, along=False, repair=False)
    _common(p, training=False)

    p = sub.add_parser("instability", help="from which epoch two copies on different data orders stay linearly "
                                           "connected (Frankle et al. 2020)")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--model", default=None, help="registry name (default: the dataset's default model)")
    p.add_argument("--spawn", type=int, nargs="+", default=[0, 1, 2, 5, 10, 20],
                   help="epochs at which two copies are spawned from the parent")
    p.add_argument("--points", type=int, default=11, help="points along each line between two copies")
    p.add_argument("--same-order", action="store_true", help="both copies see one data order (a check: no barrier)")
    p.add_argument("--bn-samples", type=int, default=None, help="recompute BatchNorm on this many training examples")
    p.add_argument("--train-samples", type=int, default=None, help="train metrics on a random subset")
    p.add_argument("--out", required=True)
    _common(p)

    p = sub.add_parser("simplex", help="grow a low-loss simplex around a trained network (SPRO, Benton et al. 2021)")
    p.add_argument("--start", required=True, nargs="+",
                   help="a trained network (run folder or weights file); several: a complex connecting them "
                        "through shared vertices; or a one-bend polychain curve run, to extend")
    p.add_argument("--vertices", type=int, default=2, help="free vertices to grow, one at a time, each trained "
                   "--epochs (default 10) with a cosine schedule from --lr (default 0.01)")
    p.add_argument("--volume-weight", type=float, default=None,
                   help="weight of -log(volume + 1e-4) in the loss (default: Benton et al.'s, 1e-8)")
    p.add_argument("--dataset", default=None, help="override the network's dataset")
    p.add_argument("--model", default=None, help="override the network's model")
    p.add_argument("--out", required=True)
    _common(p)

    p = sub.add_parser("subspace", help="train a line, curve or simplex of networks from scratch "
                                        "(Wortsman et al. 2021)")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--shape", default="line", help="line, curve (one bend) or simplexK (K = 3..8 vertices)")
    p.add_argument("--spread", type=float, default=None,
                   help="weight of the vertices' mean squared cosine similarity in the loss "
                        "(default 1, Wortsman et al.'s)")
    p.add_argument("--model", default=None, help="default: the dataset's recipe")
    p.add_argument("--out", required=True)
    _common(p)

    p = sub.add_parser("eval-simplex", help="metrics at points drawn uniformly from a simplex, and their distribution")
    p.add_argument("run", help="a simplex run folder (from simplex)")
    p.add_argument("--samples", type=int, default=50, help="points drawn uniformly (Dirichlet(1)) from the simplex")
    p.add_argument("--seed", type=int, default=0, help="seed of the draws")
    _eval_options(p, along=False, repair=False)
    _common(p, training=False)

    p = sub.add_parser("fge", help="Fast Geometric Ensembling from a trained network")
    p.add_argument("--start", required=True, help="a run folder from train (its optimizer state is restored)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=None, help="epochs of cyclic training (default: the recipe's)")
    p.add_argument("--cycle", type=int, default=None, help="cycle length in epochs, even (default: the recipe's)")
    p.add_argument("--lr1", type=float, default=None, help="high learning rate, at cycle start and end")
    p.add_argument("--lr2", type=float, default=None, help="low learning rate, at the cycle midpoint (snapshots)")
    p.add_argument("--wd", type=float, default=None, help="weight decay (default: the start network's)")
    p.add_argument("--batch-size", type=int, default=None, help="default: the start network's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-snapshots", action="store_true", help="do not save snapshot weights")
    p.add_argument("--resume", action="store_true", help="continue an unfinished FGE run with the same settings")
    _common(p, training=False)

    p = sub.add_parser("ensemble", help="ensemble of networks along a trained curve or drawn from a simplex")
    p.add_argument("--curve", default=None, help="a curve run: members at evenly spaced t in [0, 1]")
    p.add_argument("--simplex", default=None, help="a simplex run: members drawn uniformly from it")
    p.add_argument("--points", type=int, default=5, help="members")
    p.add_argument("--seed", type=int, default=None, help="seed of a simplex's draws (default 0; not for --curve)")
    p.add_argument("--out", default=None, help="JSON file (default: RUN/ensemble.json)")
    p.add_argument("--force", action="store_true")
    _common(p, training=False)

    p = sub.add_parser("budget", help="FGE vs single network vs independent ensembles at 1B and 2B, over seeds")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--model", default=None)
    p.add_argument("--epochs", type=int, required=True, help="B: epochs of one network's training")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cycle", type=int, default=None, help="FGE cycle in epochs (default: the recipe's)")
    p.add_argument("--lr", type=float, default=None, help="initial lr of normal training (default: the recipe's)")
    p.add_argument("--lr1", type=float, default=None, help="FGE high lr (default: the recipe's)")
    p.add_argument("--lr2", type=float, default=None, help="FGE low lr (default: the recipe's)")
    p.add_argument("--train-samples", type=int, default=None, help="train on the first N training examples")
    p.add_argument("--method", default="fge", help="fge (the paper's table) or espro (adds ESPRO at 2B: a SPRO "
                   "simplex around each network, Benton et al. 2021)")
    p.add_argument("--volume-weight", type=float, default=None,
                   help="ESPRO's weight of -log(volume + 1e-4) (default: Benton et al.'s, 1e-8)")
    p.add_argument("--out", required=True)
    _common(p, training=False)

    p = sub.add_parser("demo", help="the whole pipeline on MNIST-1D, ending in report.html")
    p.add_argument("--out", default="runs/demo")
    _common(p, training=False, data=False)

    p = sub.add_parser("report", help="render DIR/report.html from the results under DIR")
    p.add_argument("dir")
    return parser


def _call(args):
    """Run the command the arguments name: the CLI's options are the command's keyword arguments."""
    from . import commands
    from .runtime.speed import Speed

    options = {k: v for k, v in vars(args).items() if k not in ("command", "quiet", "amp", "channels_last", "compile")}
    if args.command != "report":
        options["speed"] = Speed(args.amp, args.channels_last, args.compile)
        options["progress"] = not args.quiet
    return getattr(commands, args.command.replace("-", "_"))(**options)


def _out_of_memory() -> tuple[type, ...]:
    """Host memory errors, and a GPU's once torch is loaded (evaluated only when an exception is raised)."""
    torch = sys.modules.get("torch")
    return (MemoryError,) + ((torch.cuda.OutOfMemoryError,) if torch is not None else ())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun -m modeconn -- connect --start ...`: the `--` keeps torchrun off our options
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    import time

    from .runtime import distributed
    from .runtime.cpu_memory import keep_freed_memory

    keep_freed_memory()
    quiet_rank = not distributed.is_main()  # under torchrun, rank 0 alone reports
    if quiet_rank and hasattr(args, "quiet"):
        args.quiet = True
    where = f" (rank {distributed.rank()})" if distributed.launched() else ""
    began = time.time()
    try:
        sink = open(os.devnull, "w") if quiet_rank else contextlib.nullcontext(sys.stdout)
        with sink as out, contextlib.redirect_stdout(out):
            result = _call(args)
            if args.command == "demo":
                print(f"demo finished in {time.time() - began:.0f} s; results in {args.out}; open {result}")
            else:
                print(_summary(args.command, result, args))
    except ModeconnError as exc:
        print(f"modeconn {args.command}: error{where}: {exc}", file=sys.stderr)
        return 2
    except _out_of_memory() as exc:
        said = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        print(f"modeconn {args.command}: error{where}: out of memory ({said}); ask for less at once "
              "(--batch-size, --points, --grid, --samples, --chunk) or run where there is more memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"modeconn {args.command}: interrupted; rerun with --resume where the command offers it", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
