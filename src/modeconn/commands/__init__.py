"""The command layer: one module per CLI command, each registered in `registry.COMMANDS` with its options
dataclass. The CLI and the demo call these; nothing below imports them.

Each name exported here is the registered command, callable from Python with the command's options as
keyword arguments: `modeconn.commands.plane("runs/plane", curve="runs/ab", grid=5)`.
"""
from .align import align
from .budget import budget
from .connect import connect
from .connectivity import connectivity
from .curvature import curvature
from .demo import demo
from .ensemble import ensemble
from .eval_curve import eval_curve
from .eval_line import eval_line
from .eval_simplex import eval_simplex
from .fge import fge
from .info import info
from .instability import instability
from .landscape import landscape
from .plane import plane
from .registry import COMMANDS, Command
from .report import report
from .simplex import simplex
from .subspace import subspace
from .train import train

__all__ = ["COMMANDS", "Command", "align", "budget", "connect", "connectivity", "curvature", "demo", "ensemble",
           "eval_curve", "eval_line", "eval_simplex", "fge", "info", "instability", "landscape", "plane", "report",
           "simplex", "subspace", "train"]
