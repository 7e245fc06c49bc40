"""The command line: one subcommand per registered command, its options generated from the command's options
dataclass (modeconn.commands.options), and the errors every command shares turned into one line and exit status 2.

argparse (standard library) is kept rather than typer, cyclopts, tyro or jsonargparse: each of those changes
today's spellings (boolean `--flag/--no-flag` pairs, nested dataclass prefixes such as `--device-options.amp`,
their own error format), and generating argparse from the dataclass fields takes the loop below.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import typing

from .errors import ModeconnError

SUBPARSERS: dict[str, argparse.ArgumentParser] = {}  # command name -> its parser, filled by build_parser


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block), exit status 2 as usual."""

    def error(self, message):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _argument(parser: argparse.ArgumentParser, f: dataclasses.Field, hint) -> None:
    """One dataclass field as one argparse argument: flag, type, nargs and default from the field."""
    meta = f.metadata.get("option", {})
    if not meta.get("cli", True):
        return
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    required = default is dataclasses.MISSING
    shown = (default not in (None, [], dataclasses.MISSING) and not isinstance(default, bool)  # a flag's help says it
             and "default" not in meta.get("help", ""))
    # %% so argparse's help formatting (which expands %(default)s) keeps a literal percent sign ("down to 1%")
    text = (meta.get("help") or "").replace("%", "%%")
    kwargs: dict = {"help": text + (f" (default: {_spelled(default)})" if shown else "") or None}
    base = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = typing.get_origin(base[0]) or base[0]
    if kind is bool:
        kwargs["action"] = "store_false" if default is True else "store_true"
    else:
        element = typing.get_args(base[0])[0] if kind is list else kind
        kwargs.update(type=element, choices=meta.get("choices"), metavar=meta.get("metavar"))
        kwargs["nargs"] = meta.get("nargs") or ("+" if kind is list else None)
        if not required:
            kwargs["default"] = default
    if meta.get("positional"):
        parser.add_argument(f.name, **kwargs)
    else:
        parser.add_argument(meta.get("flag") or "--" + f.name.replace("_", "-"), dest=f.name,
                            required=required, **kwargs)


def _spelled(default) -> str:
    """A default as the command line writes it (a list as its items); %% so argparse's help formatting keeps it."""
    return (" ".join(map(str, default)) if isinstance(default, list) else str(default)).replace("%", "%%")


def _version() -> str:
    import platform

    import torch

    from .version import __version__
    return f"modeconn {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered command, generated from its options dataclass."""
    from .commands import COMMANDS

    parser = _Parser(prog="modeconn", description="Mode connectivity and fast ensembling for PyTorch.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, cmd in sorted(COMMANDS.items()):
        p = sub.add_parser(name, help=cmd.help, description=cmd.doc.split("\n\n")[0] or cmd.help)
        SUBPARSERS[name] = p
        hints = typing.get_type_hints(cmd.options)
        shared = {f.name for base in cmd.options.__mro__[1:] if dataclasses.is_dataclass(base)
                  for f in dataclasses.fields(base)}
        for f in sorted(dataclasses.fields(cmd.options), key=lambda f: f.name in shared):  # its own options first
            _argument(p, f, hints[f.name])
    return parser


def _out_of_memory() -> tuple[type[BaseException], ...]:
    """Host memory errors, and a GPU's once torch is loaded (evaluated only when an exception is raised)."""
    torch = sys.modules.get("torch")
    return (MemoryError,) + ((torch.cuda.OutOfMemoryError,) if torch is not None else ())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--"]:  # `torchrun -m modeconn -- connect --start ...`: the `--` keeps torchrun off our options
        argv = argv[1:]
    namespace, unknown = build_parser().parse_known_args(argv)
    if unknown:  # refused by the command's own parser, so the message names the command and its --help
        SUBPARSERS[namespace.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args = vars(namespace)
    from .commands import COMMANDS
    from .runtime import distributed
    from .runtime.cpu_memory import keep_freed_memory

    keep_freed_memory()
    cmd = COMMANDS[args.pop("command")]
    quiet_rank = not distributed.is_main()  # under torchrun, rank 0 alone reports
    if quiet_rank and "progress" in args:
        args["progress"] = False
    where = f" (rank {distributed.rank()})" if distributed.launched() else ""
    try:
        sink = open(os.devnull, "w") if quiet_rank else contextlib.nullcontext(sys.stdout)
        with sink as out, contextlib.redirect_stdout(out):
            options = cmd.options(**args)
            print(cmd.summary(cmd.run(options), options))
    except ModeconnError as exc:
        print(f"modeconn {cmd.name}: error{where}: {exc.with_options()}", file=sys.stderr)
        return 2
    except _out_of_memory() as exc:
        said = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        print(f"modeconn {cmd.name}: error{where}: out of memory ({said}); ask for less at once "
              "(--batch-size, --points, --grid, --samples, --chunk) or run where there is more memory", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        how = " with --resume" if any(f.name == "resume" for f in dataclasses.fields(cmd.options)) else ""
        print(f"modeconn {cmd.name}: interrupted; rerun the same command{how} to continue", file=sys.stderr)
        return 130
    finally:
        distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
