"""The command layer: one function per CLI command, called by the CLI and the demo; nothing below imports it."""
from .alignment import align, connectivity
from .curvature import curvature
from .demo import demo, report
from .ensembles import budget, fge
from .instability import instability
from .landscape import landscape
from .measure import ensemble, eval_curve, eval_line, eval_simplex, plane
from .network import connect, train
from .simplex import simplex
from .subspace import subspace

__all__ = ["align", "budget", "connect", "connectivity", "curvature", "demo", "ensemble", "eval_curve", "eval_line",
           "eval_simplex", "fge", "instability", "landscape", "plane", "report",
           "simplex", "subspace", "train"]
