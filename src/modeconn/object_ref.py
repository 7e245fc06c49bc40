"""Objects a user names by reference, `package.module:attribute`: their own model builder, data or task.

The form is the one Python packaging uses for entry points. The module is imported by name from the Python path
(an installed package, or a folder on PYTHONPATH), never from a file path, so a run folder's contents are never
imported: a run records the reference, and reading the run imports the same module again.
"""
from __future__ import annotations

import importlib
import re

from .errors import ModeconnError

_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def one_line(exc: BaseException) -> str:
    """An exception raised in a user's code as one line: its type and the first line of its message."""
    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return type(exc).__name__ + (f": {first}" if first else "")


def is_reference(text) -> bool:
    """Whether `text` has the form package.module:attribute (a colon names something to import)."""
    return isinstance(text, str) and ":" in text


def resolve(reference: str, option: str):
    """The object `reference` (package.module:attribute, attribute may be dotted) names.

    option: what the reference was given as (`--model`, `--data`, ...), for the error. Raises ModeconnError (one
    line) for a malformed reference, a file path, a module that cannot be imported, or a missing attribute.
    """
    if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference):
        hint = (" (a module is named by its import path, not a file: put its folder on PYTHONPATH)"
                if isinstance(reference, str) and ("/" in reference or "\\" in reference or ".py:" in reference)
                else "")
        raise ModeconnError(f"{option} {reference!r} is not of the form package.module:name{hint}")
    module_name, attribute = reference.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ModeconnError(f"{option} {reference}: cannot import {module_name} ({exc}); install it or put its "
                            "folder on PYTHONPATH") from None
    except Exception as exc:  # the user's module failed while importing: say how, in one line
        raise ModeconnError(f"{option} {reference}: importing {module_name} failed: {one_line(exc)}") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ModeconnError(f"{option} {reference}: {module_name} has no {attribute!r}")
        obj = getattr(obj, part)
    return obj
