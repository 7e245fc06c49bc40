"""Run `modeconn` under torchrun while recording every filesystem change this rank makes under a folder.

Usage: torchrun ... tests/helpers/rank_probe.py WATCHED LOGDIR <modeconn arguments>
Writes LOGDIR/rank<R>.json: the paths this rank opened for writing, created, renamed or removed
under WATCHED (recorded through Python's audit hooks, so nothing in modeconn is patched).
"""
import json
import os
import sys

watched, logdir, argv = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
changes, recording = [], [True]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path) -> bool:
    return isinstance(path, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(path)).startswith(watched)


def hook(event, args):
    if not recording[0]:
        return
    if event == "open":
        path, mode, flags = args
        writing = (mode and any(c in mode for c in "wax+")) or (mode is None and flags and flags & WRITE_FLAGS)
        if writing and _inside(path):
            changes.append(("open", os.fsdecode(path)))
    elif event == "os.rename" and (_inside(args[0]) or _inside(args[1])):
        changes.append((event, os.fsdecode(args[1])))  # the destination: the file that appears
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "os.truncate") and _inside(args[0]):
        changes.append((event, os.fsdecode(args[0])))


sys.addaudithook(hook)
from modeconn.cli import main  # noqa: E402

code = main(argv)
recording[0] = False
with open(os.path.join(logdir, f"rank{os.environ.get('RANK', '0')}.json"), "w") as fh:
    json.dump(changes, fh)
sys.exit(code)
