"""`modeconn report`: one HTML page describing every modeconn result under a folder."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ModeconnError
from ..reporting.report import render_report
from . import validate
from .options import REQUIRED, option
from .registry import command


@dataclass
class ReportOptions:
    dir: str = option(REQUIRED, "a folder holding modeconn runs", positional=True)


@command("report", ReportOptions, help="render DIR/report.html from the results under DIR",
         summary=lambda path, o: f"wrote {path}")
def report(o: ReportOptions) -> Path:
    """Write DIR/report.html describing every modeconn result under DIR."""
    if o.dir is None or not str(o.dir).strip() or not Path(o.dir).is_dir():
        raise ModeconnError(f"{o.dir!r} is not a folder: pass a folder holding modeconn runs")
    return render_report(validate.output_folder("DIR", o.dir))
