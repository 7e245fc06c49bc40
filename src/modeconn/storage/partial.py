"""The one resumable store of long measurements: rows saved after every round, so a killed run measures only the
rows that are missing. Planes, landscape slices, simplex evaluation and curvature all keep their progress in one.

A store is FOLDER/NAME, an npz holding `done` ((n,) booleans), `fingerprint` (the settings the rows were
measured with, as a string) and one float64 array per column, of shape (n, *that column's row shape). Under
torchrun every rank measures its share of a round and rank 0 saves it (the callers gather the rows first), so
a sharded run resumes from the same file as a single process.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ModeconnError, param
from .files import load_npz, remove_file, save_npz


def fingerprint_of(caller: str, **settings) -> str:
    """The fingerprint a store is kept under: the caller's (what identifies the measurement to it: the runs, a
    seed) and every setting the analysis itself was given, so a rerun with other settings is refused rather
    than handed the old rows."""
    return json.dumps({"caller": caller, **settings}, sort_keys=True, default=str)


@dataclass
class PartialStore:
    """Rows 0..n-1 of a measurement with named float columns (`columns[name]` is one row's shape: () for a
    number, (k,) for k of them), kept in FOLDER/NAME (`folder` None: in memory only, nothing written, no resume).

    `fingerprint` must match a saved store to resume it; `force` ignores whatever is saved (start over).
    `check(done, values)` returns whether the saved rows are valid measurements (e.g. finite eigenvalues);
    a store that fails it is refused as corrupt.
    """

    folder: Path | None
    name: str
    fingerprint: str
    n: int
    columns: dict[str, tuple[int, ...]]
    force: bool = False
    check: Callable[[np.ndarray, dict[str, np.ndarray]], bool] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.folder is not None and Path(self.folder).exists() and not Path(self.folder).is_dir():
            raise ModeconnError(f"{self.folder} is a file: {param('store', 'out')} must be a folder (or one to "
                                "create) to keep the measured points in")

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else Path(self.folder) / self.name

    def empty(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """No row done, every value NaN."""
        return (np.zeros(self.n, dtype=bool),
                {c: np.full((self.n, *shape), np.nan) for c, shape in self.columns.items()})

    def load(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The rows a killed run with the same fingerprint measured: ((n,) done flags, {column: (n, ...) float64}).

        Writes nothing, so a command can call it at the door and again under its folder's lock. Raises
        ModeconnError (one line) for a truncated or corrupt store, one of other rows or columns, or one
        started with other settings, unless `force`.
        """
        path = self.path
        if path is None or self.force or not path.exists():
            return self.empty()
        again = f"pass {param('force')} to start over, or choose another {param('store', 'out')}"
        try:
            saved = load_npz(path)
        except ModeconnError:
            raise ModeconnError(f"{path} is truncated or corrupt, so the points it holds cannot be resumed; "
                                f"{again}") from None
        if "fingerprint" not in saved or str(saved["fingerprint"]) != self.fingerprint:
            raise ModeconnError(f"{path} was started with other settings; rerun the same command, "
                                f"choose another {param('store', 'out')}, or pass {param('force')} to start over")
        done = saved.get("done")
        arrays = {c: saved.get(c) for c in self.columns}
        if (done is None or done.shape != (self.n,) or done.dtype != np.bool_
                or any(a is None or a.shape != (self.n, *self.columns[c]) or a.dtype.kind != "f"
                       for c, a in arrays.items())):
            raise ModeconnError(f"{path} does not hold {self.n} points of {', '.join(self.columns)} and their done "
                                f"flags (corrupt); {again}")
        values = {c: a.astype(np.float64) for c, a in arrays.items() if a is not None}
        if self.check is not None and not self.check(done, values):
            raise ModeconnError(f"{path} is truncated or corrupt (its rows are not measurements), so the points it "
                                f"holds cannot be resumed; {again}")
        return done, values

    def save(self, done: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Write the rows so far atomically (rank 0 under torchrun: `save_npz` writes on the main process)."""
        if self.path is not None:
            save_npz(self.path, {"done": done, "fingerprint": np.array(self.fingerprint), **values})

    def finish(self) -> None:
        """Remove the store once the finished result is on disk."""
        if self.path is not None:
            remove_file(self.path)
