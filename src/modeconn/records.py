"""Every kind of record modeconn writes, and finding them under a folder by kind.

A run folder's record is its run.json (`storage.runfolder.RunInfo`, kinds network, curve and simplex); every
analysis writes one result record (`storage.record.Record`) beside it or in its own folder. The report and
`modeconn info` find results here by kind, so a new result type is one class added to `RESULTS`.
"""
from __future__ import annotations

from pathlib import Path

from .alignment.connectivity import PathsResult
from .errors import ModeconnError
from .evaluation.along import CurveEval, LineEval
from .evaluation.curvature import CurvatureResult
from .evaluation.ensemble import SpanEnsemble
from .evaluation.landscape import LandscapeResult
from .evaluation.plane_grid import PlaneResult
from .evaluation.simplex_eval import SimplexEval
from .storage.record import Record
from .storage.runfolder import RunInfo, read_run
from .training.budget import BudgetResult
from .training.fge import FGEResult
from .training.instability import InstabilityResult

RUN_KINDS = ("network", "curve", "simplex")
# In the order a study makes them: the order `info` lists a folder's results in.
RESULTS: dict[str, type[Record]] = {cls.kind: cls for cls in (
    CurveEval, LineEval, PathsResult, PlaneResult, LandscapeResult, CurvatureResult, SimplexEval, SpanEnsemble,
    FGEResult, InstabilityResult, BudgetResult)}
KINDS = (*RUN_KINDS, *RESULTS)


def find_records(root, kind: str) -> list[tuple[Path, RunInfo | Record]]:
    """Every record of `kind` under ROOT (ROOT included), as (file, record) sorted by file: run.json files of that
    run kind, or the result files of that kind, each read and checked. Raises ModeconnError for an unknown kind
    or a file that is not the record its name says (one line, naming the file)."""
    root = Path(root)
    if not root.is_dir():
        raise ModeconnError(f"{root} is not a folder: pass the folder that holds the results")
    if kind in RUN_KINDS:
        runs = [(path, read_run(path)) for path in sorted(root.rglob("run.json"))]
        return [(path, info) for path, info in runs if info.kind == kind]
    if kind not in RESULTS:
        raise ModeconnError(f"unknown record kind {kind!r}: choose one of {', '.join(KINDS)}")
    cls = RESULTS[kind]
    return [(path, cls.read(path)) for path in sorted(root.rglob(cls.file))]


def read_record(path) -> RunInfo | Record:
    """The record in one file, by the file's name: a run.json (RunInfo) or a result file (plane.json, ...).
    Raises ModeconnError (one line) for a file that is neither, or not the record its name says."""
    path = Path(path)
    if not path.is_file():
        raise ModeconnError(f"{path} {'is a folder' if path.is_dir() else 'does not exist'}: pass one file modeconn "
                            "wrote (run.json, curve_eval.json, ...); find_records(folder, kind) searches a folder")
    if path.name == "run.json":
        return read_run(path)
    for cls in RESULTS.values():
        if path.name == cls.file:
            return cls.read(path)
    raise ModeconnError(f"{path} is not a file modeconn writes: pass run.json or one of "
                        f"{', '.join(cls.file for cls in RESULTS.values())}")


def results_in(folder) -> list[str]:
    """The kinds of result whose file lies directly in FOLDER, in the order of `RESULTS`."""
    folder = Path(folder)
    return [kind for kind, cls in RESULTS.items() if (folder / cls.file).is_file()]
