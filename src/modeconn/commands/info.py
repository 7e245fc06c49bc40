"""`modeconn info RUN`: what a run folder holds, read through the typed run.json reader."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModeconnError
from ..storage.runfolder import read_run
from .options import REQUIRED, option
from .registry import command

# The result files a run folder may hold, in the order a study makes them.
RESULT_FILES = ("curve_eval.json", "line_eval.json", "paths.json", "plane.json", "landscape.json", "curvature.json",
                "simplex_eval.json", "ensemble.json", "fge.json", "instability.json", "budget.json")


@dataclass
class InfoOptions:
    run: str = option(REQUIRED, "a run folder (network, curve or simplex)", positional=True)


def _summary(record: dict, o: InfoOptions) -> str:
    lines = [f"{o.run}: {record['kind']} run of {record['model']} on {record['dataset']}"
             + (f", {record['curve']}" if record.get("curve") else "")]
    if record["metrics"]:
        lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()))
    if record.get("made_with"):
        lines.append(f"  made with {record['made_with']}")
    lines.append("  results here: " + (", ".join(record["results"]) or "none"))
    return "\n".join(lines)


@command("info", InfoOptions, help="what a run folder holds: its kind, model, dataset, headline metrics and results",
         summary=_summary)
def info(o: InfoOptions) -> dict:
    """A run folder's record: kind, dataset, model, curve family, headline test metrics, provenance and the
    result files beside it. Raises ModeconnError (one line) for a folder without a valid run.json."""
    folder = Path(o.run)
    if not str(o.run).strip() or not folder.exists():
        raise ModeconnError(f"{o.run!r} does not exist: pass a run folder (network, curve or simplex)")
    if folder.is_dir() and not (folder / "run.json").exists():
        raise ModeconnError(f"{folder} is not a run folder (it holds no run.json): pass a network, curve or simplex "
                            "run; result folders (a plane, a line evaluation) are described by the report")
    run = read_run(folder)
    raw = run.raw
    headline = ("midpoint_test_err", "midpoint_test_loss", "centroid_test_err", "test_err", "test_loss")
    made = raw.get("made_with")
    return {"kind": run.kind, "dataset": run.dataset, "model": run.model.name,
            "curve": f"{run.curve.kind} curve, {run.curve.bends} bend(s)" if run.curve else None,
            "metrics": {k: float(raw[k]) for k in headline if isinstance(raw.get(k), (int, float))},
            "made_with": (", ".join(f"{k} {v}" for k, v in made.items() if isinstance(v, (str, int, float)))
                          if isinstance(made, dict) else None),
            "results": [name for name in RESULT_FILES if (Path(run.path).parent / name).is_file()]}
