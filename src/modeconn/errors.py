"""The one exception type users see: a one-line message saying what is wrong and what to do.

Code below the command layer names a setting by its Python parameter (`param("lr")`); a Python caller
reads it as `lr`, and the command line, where the same setting is an option, as --lr.
"""
from __future__ import annotations

import re

_MARK, _OR = "\x1f", "\x1e"  # ASCII unit and record separators: mark a parameter inside a message, never printed
_PARAM = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*)(?:{_OR}([A-Za-z_][A-Za-z0-9_]*))?{_MARK}")


def param(name: str, option: str | None = None) -> str:
    """A parameter's name inside a ModeconnError message: shown as `name` to Python callers and as the
    option --name (underscores as dashes) on the command line; `option` when the command line calls the
    same setting otherwise (a function's `store` or `checkpoint` is the command's --out)."""
    return f"{_MARK}{name}{_OR + option if option else ''}{_MARK}"


class ModeconnError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits with status 2."""

    def __str__(self) -> str:
        return _PARAM.sub(lambda m: f"`{m.group(1)}`", super().__str__())

    def with_options(self) -> str:
        """The message as the command line says it: each parameter named as its option (`lr` is --lr)."""
        return _PARAM.sub(lambda m: "--" + (m.group(2) or m.group(1)).replace("_", "-"), super().__str__())
