"""`modeconn info PATH`: what a run folder, a result folder or a result file holds, read through the typed
records (`modeconn.records`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModeconnError
from ..records import RESULTS, read_record, results_in
from ..storage.runfolder import read_run
from .options import REQUIRED, option
from .registry import command


@dataclass
class InfoOptions:
    run: str = option(REQUIRED, "a run folder (network, curve or simplex), a folder of results, or a result file",
                      positional=True)


def _summary(record: dict, o: InfoOptions) -> str:
    lines = []
    if record["kind"] is not None:
        lines.append(f"{o.run}: {record['kind']} run of {record['model']} on {record['dataset']}"
                     + (f", {record['curve']}" if record.get("curve") else ""))
        if record["metrics"]:
            lines.append("  " + ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()))
        if record.get("made_with"):
            lines.append(f"  made with {record['made_with']}")
        lines.append("  results here: " + (", ".join(record["results"]) or "none"))
    else:
        lines.append(f"{o.run}: results " + ", ".join(record["results"]))
    for kind, text in record["results"].items():
        lines.append(f"{kind} ({RESULTS[kind].file}):\n" + "\n".join("  " + line.strip() for line in text.split("\n")))
    return "\n".join(lines)


@command("info", InfoOptions, help="what a run folder holds: its kind, model, dataset, headline metrics and results",
         summary=_summary)
def info(o: InfoOptions) -> dict:
    """A run folder's record (kind, dataset, model, curve family, headline test metrics, provenance) and each
    result record beside it with its one-line description; a folder of results without run.json, or one result
    file, gives its results alone (`kind` None). Raises ModeconnError (one line) for a path that holds neither."""
    path = Path(o.run)
    if not str(o.run).strip() or not path.exists():
        raise ModeconnError(f"{o.run!r} does not exist: pass a run folder (network, curve or simplex)")
    halves = {c.file for c in RESULTS.values()}
    if path.is_file() and path.suffix == ".npz" and path.with_suffix(".json").name in halves:
        path = path.with_suffix(".json")  # the arrays of a plane or landscape: described with their JSON half
    if path.is_file() and path.name != "run.json" and path.name in {cls.file for cls in RESULTS.values()}:
        result = read_record(path)  # one result file
        return _record(None, {result.kind: result.describe()})
    if path.is_dir() and not (path / "run.json").exists():
        kinds = results_in(path)
        if not kinds:
            raise ModeconnError(f"{path} is not a run folder (it holds no run.json) and holds no result modeconn "
                                "wrote: pass a network, curve or simplex run, a folder of results or one result "
                                "file (`modeconn report` describes a folder of runs)")
        return _record(None, {kind: RESULTS[kind].read(path).describe() for kind in kinds})
    run = read_run(path)
    made = run.raw.get("made_with")
    folder = Path(run.path).parent
    return _record(run.kind, {kind: RESULTS[kind].read(folder).describe() for kind in results_in(folder)},
                   dataset=run.dataset, model=run.model.name,
                   curve=f"{run.curve.kind} curve, {run.curve.bends} bend(s)" if run.curve else None,
                   metrics=run.metrics(),
                   made_with=(", ".join(f"{k} {v}" for k, v in made.items() if isinstance(v, (str, int, float)))
                              if isinstance(made, dict) else None))


def _record(kind: str | None, results: dict[str, str], **run) -> dict:
    """What info returns: the run's fields (None for a folder of results) and {result kind: its description}."""
    fields = {"dataset": None, "model": None, "curve": None, "metrics": {}, "made_with": None, **run}
    return {"kind": kind, **fields, "results": results}
