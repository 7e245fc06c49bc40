"""The README's list of every command's options, generated from the registry so the two cannot drift apart.

`python -m modeconn.commands.reference README.md` rewrites the block between the markers below;
tests/test_commands.py fails when the README's block differs from what this module generates.
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from . import options as groups
from .registry import COMMANDS

BEGIN = "<!-- options: generated from the commands' options dataclasses by `python -m modeconn.commands.reference " \
        "README.md`; tests/test_commands.py checks it -->"
END = "<!-- end of options -->"
GROUPS = (groups.DeviceOptions, groups.DataOptions, groups.SamplingOptions, groups.EvalOptions,
          groups.TrainingOptions)


def _own(cls: type) -> list[dataclasses.Field]:
    """The fields a dataclass declares itself, not those it inherits from the option groups."""
    inherited = {f.name for base in cls.__mro__[1:] if dataclasses.is_dataclass(base) for f in dataclasses.fields(base)}
    return [f for f in dataclasses.fields(cls) if f.name not in inherited]


def render(f: dataclasses.Field) -> str:
    """One option as the command line spells it, with its default: `--grid 21`, `--points RUN RUN RUN`, `RUN`."""
    meta = f.metadata["option"]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if meta["positional"]:
        return f"`{f.name.upper()}`" + (" (optional)" if meta["nargs"] == "?" else "")
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    if isinstance(default, bool):
        return f"`{flag}`"
    if default is dataclasses.MISSING:
        text = f"`{flag} {meta['metavar'] or f.name.upper()}` (required)"
    elif isinstance(default, list):
        text = f"`{flag} {' '.join(map(str, default)) or '[N ...]'}`"
    elif isinstance(meta["nargs"], int):
        text = f"`{flag} {' '.join([meta['metavar'] or 'X'] * meta['nargs'])}`"
    else:
        text = f"`{flag}`" if default is None else f"`{flag} {default}`"
    return text + (f" ({'/'.join(meta['choices'])})" if meta["choices"] else "")


def options_reference() -> str:
    """The Markdown block: the shared option groups once, then each command's own options."""
    lines = [BEGIN, "", "| option group | options (default) | commands |", "|---|---|---|"]
    for group in GROUPS:
        users = [name for name, c in sorted(COMMANDS.items()) if group in c.options.__mro__]
        assert group.__doc__ is not None, "every option group has a docstring: its first line describes it here"
        about = group.__doc__.splitlines()[0].rstrip(".")
        lines.append(f"| {group.__name__.removesuffix('Options').lower()}: {about[0].lower() + about[1:]} | "
                     f"{', '.join(render(f) for f in _own(group))} | {', '.join(users)} |")
    lines += ["", "| command | its own options (default) |", "|---|---|"]
    for name, c in sorted(COMMANDS.items()):
        lines.append(f"| `{name}` | {', '.join(render(f) for f in _own(c.options))} |")
    return "\n".join(lines + ["", END])


def write(readme: Path) -> None:
    """Replace the block between BEGIN and END in `readme` with the generated one."""
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + options_reference() + text[end:])


if __name__ == "__main__":  # run as `python -m modeconn.commands.reference`: the package has registered them all
    write(Path(sys.argv[1]))
