"""Whether the state store can write: shared by the poll cycle, the delivery worker and the readiness check; and
the errors by which a store says it cannot (`watcher.store.errors` re-exports them beside the backends).

Pure bookkeeping, no I/O: callers report each write that failed or succeeded, and are told when a failure is worth a
log line (the first, then at most one per `log_every_ms`) and when the store has come back.
"""

from __future__ import annotations

from typing import Final

LOG_EVERY_MS: Final = 60_000


class StoreError(Exception):
    """The database cannot be used (newer schema, not a benchwatch database, unreadable, away)."""


class StoreWriteError(StoreError):
    """A write failed and nothing of it was recorded: a full disk, a read-only or damaged file or database (on
    PostgreSQL: SQLSTATE 53100, 58030, 25006). Usually passing: the caller keeps what it meant to write and tries
    again. A lost connection is a plain `StoreError` (the store is unreachable)."""


class StoreHealth:
    """Tracks an outage of the store's writes (a full disk, a read-only or broken file)."""

    def __init__(self, log_every_ms: int = LOG_EVERY_MS) -> None:
        self.log_every_ms = log_every_ms
        self.failing_since_ms: int | None = None
        self.last_error = ""
        self.failures = 0
        self._logged_ms: int | None = None

    @property
    def writable(self) -> bool:
        """False from a failed write until the next one that succeeds."""
        return self.failing_since_ms is None

    def failed(self, now_ms: int, error: str) -> bool:
        """A write failed; True when this one should be logged (the first, then once per `log_every_ms`)."""
        if self.failing_since_ms is None:
            self.failing_since_ms = now_ms
        self.failures += 1
        self.last_error = error
        if self._logged_ms is not None and now_ms - self._logged_ms < self.log_every_ms:
            return False
        self._logged_ms = now_ms
        return True

    def succeeded(self, now_ms: int) -> int | None:
        """A write succeeded; returns how long the store could not write, when it could not until now."""
        if self.failing_since_ms is None:
            return None
        down_ms = now_ms - self.failing_since_ms
        self.failing_since_ms, self._logged_ms, self.failures = None, None, 0
        return down_ms

    def describe(self, now_ms: int) -> str:
        """Why the store is not writable, for /readyz and logs."""
        if self.failing_since_ms is None:
            return "the state store is writable"
        since_s = (now_ms - self.failing_since_ms) / 1000
        return f"the state store cannot write for {since_s:.0f}s ({self.failures} attempts): {self.last_error}"
