"""An exclusive lock on an output folder for the life of a run: a second process is refused at once.

The lock is an OS file lock (flock) on OUT/.modeconn.lock, so it dies with its process: the
file a killed run leaves behind blocks nobody. The file holds the owner's pid for the message.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModeconnError, param

LOCK_NAME = ".modeconn.lock"

try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            # msvcrt's stubs declare locking only when checking for win32; this branch runs only on Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]  # win32-only stubs, as above


def folder_in_use(folder: Path, owner: str) -> ModeconnError:
    return ModeconnError(f"{folder} is in use by another modeconn process (pid {owner}); "
                         f"wait for it to finish, or choose another {param('out')}")


def lock_owner(folder: Path) -> str | None:
    """The pid of a live process holding `folder`'s lock, or None; creates nothing (a check at a command's door).

    Not for a process that holds the lock itself: a second descriptor of the same file would see it as taken.
    """
    try:
        fd = os.open(Path(folder) / LOCK_NAME, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:  # no lock file, or not ours to read: nobody this check can see holds it
        return None
    try:
        if _try_lock(fd):
            _unlock(fd)
            return None
        return os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    finally:
        os.close(fd)


class FolderLock:
    """Held while a command writes into `folder`; `release` (or process exit) frees it."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> FolderLock:
        # O_NOFOLLOW: a link planted as the lock file must not make us write the pid into its target
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise ModeconnError(f"cannot use {self.path} as the folder's lock file ({exc.strerror}: a link or a "
                                f"folder is in its place); remove it, or choose another {param('out')}") from None
        if not _try_lock(fd):
            owner = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise folder_in_use(self.path.parent, owner)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock; the file stays (removing it would race)
            self.fd = None
