"""The command registry: each command registers itself here, as models register in models/__init__.py.

A command is one module: an options dataclass (commands/options.py says how to write one), one
function that takes those options and returns a result, and the line the CLI prints about that
result. `@command("plane", PlaneOptions, help=..., summary=...)` registers it; the CLI's parser
is generated from COMMANDS, and the registered object is itself callable with the options as
keyword arguments, so Python callers and the CLI run the same code with the same defaults.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ModeconnError

COMMANDS: dict[str, Command] = {}  # CLI name -> Command, in the order the commands were registered


@dataclass(frozen=True)
class Command:
    """A registered command. Calling it builds its options from the arguments and runs it."""

    name: str
    options: type
    run: Callable[[Any], Any]
    help: str
    summary: Callable[[Any, Any], str]
    doc: str = ""

    def __call__(self, *args, **kwargs):
        try:
            return self.run(self.options(*args, **kwargs))
        except ModeconnError as exc:  # a command speaks the command line's language: a parameter is its option
            raise ModeconnError(exc.with_options()) from None

    @property
    def __signature__(self) -> inspect.Signature:
        """The options as the call's signature, so `help()` and `inspect.signature` show them."""
        return inspect.signature(self.options).replace(return_annotation=inspect.Signature.empty)

    def option_names(self) -> list[str]:
        """Every option's name, as a Python caller spells it."""
        return [f.name for f in dataclasses.fields(self.options)]


def command(name: str, options: type, help: str, summary: Callable[[Any, Any], str]):
    """Register the decorated function as the command `name` (its CLI spelling, e.g. "eval-curve").

    The function takes one argument, an instance of `options`, and returns the command's result;
    `summary(result, options)` is what the CLI prints when it finishes. Returns the Command.
    """
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"{name}: options must be a dataclass, got {options!r}")

    def register(run: Callable[[Any], Any]) -> Command:
        if name in COMMANDS:
            raise ValueError(f"the command {name!r} is registered twice")
        COMMANDS[name] = Command(name, options, run, help, summary, run.__doc__ or "")
        return COMMANDS[name]
    return register
