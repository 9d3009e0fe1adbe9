"""One SQLite state file, one process: an exclusive lock on `<file>.lock`, taken at open, held until close."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from watcher.store.errors import StoreError


class StateFileLock:
    """An exclusive, non-blocking `flock` on `<database>.lock`: a second process is refused at once.

    The kernel drops the lock when the process dies (even by `kill -9`), so a crash never leaves it stale.
    """

    def __init__(self, database: str) -> None:
        self.path = Path(f"{database}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `StoreError`: saying who to ask for replicas, or why the lock file cannot be made."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only or missing folder, no permission: the state cannot be kept there
            raise StoreError(f"{self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.path.with_suffix('')}: another benchwatch process is using this state file; an SQLite file"
                " serves one process (stop the other one) — for several replicas, use a PostgreSQL database:"
                " state: {url: postgresql://user@host:5432/benchwatch}"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person wondering who holds it
        self._fd = fd

    def release(self) -> None:
        """Let go of the lock (closing the descriptor releases it)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
