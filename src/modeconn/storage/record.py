"""Result records: what every analysis writes is one typed record with a `kind`, one `write`/`read` pair and a
one-line `describe()`.

A record knows its file (`plane.json`, `curvature.json`, ...): `write(folder)` writes it atomically (data only;
figures are drawn by `reporting/`), `read(path)` reads it back from the folder or the file itself, refusing a
file that is not that record in one line. `modeconn.records` lists every kind, so the report and `info` find
results by kind rather than by file name. (The method is `describe()`, not `summary()`, because `summary` is
already the field of the JSON files that holds the per-path figures.)
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

from ..errors import ModeconnError
from .files import read_json, write_json

R = TypeVar("R", bound="Record")


class Record:
    """Base of the result records. A subclass sets `kind` and `file` and defines `to_json`, `from_json` and
    `describe`; records kept in more than one file (an npz beside the JSON) override `write` and `read`."""

    kind: ClassVar[str]
    file: ClassVar[str]  # the file that holds the record; written last, so its presence means complete
    what: ClassVar[str] = "a modeconn result"  # how a refusal names the record: "a curvature result"
    made_by: ClassVar[str] = ""  # the command that writes it, named in a refusal: "curvature"

    @classmethod
    @contextmanager
    def parsing(cls, source: str) -> Iterator[None]:
        """Wrap `from_json`'s reading of a decoded object: a missing key or a value of the wrong type or shape
        (KeyError, TypeError, ValueError, IndexError, AttributeError) becomes one ModeconnError line naming
        `source`, what was malformed and the command that writes the record."""
        try:
            yield
        except (TypeError, KeyError, ValueError, IndexError, AttributeError) as exc:
            rerun = f"; rerun `modeconn {cls.made_by}`" if cls.made_by else ""
            raise ModeconnError(f"{source} is not {cls.what} (missing or malformed {exc}){rerun}") from None

    def to_json(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_json(cls: type[R], obj, source: str) -> R:
        """The record held by a decoded JSON object; raises ModeconnError (one line, naming `source`) for an
        object that is not one."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the command line: the record's headline figures."""
        raise NotImplementedError

    def write(self, folder, file: str | None = None) -> Path:
        """Write the record atomically as FOLDER/`file` (default: the kind's file name); returns the path."""
        path = Path(folder) / (file or self.file)
        write_json(path, self.to_json())
        return path

    @classmethod
    def read(cls: type[R], path) -> R:
        """Read the record from its file, or from FOLDER/`file`. Raises ModeconnError (one line) for a missing,
        corrupt or foreign file."""
        path = Path(path)
        if path.is_dir():
            path = path / cls.file
        return cls.from_json(read_json(path), str(path))
