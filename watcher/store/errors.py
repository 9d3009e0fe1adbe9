"""What a store raises when it cannot do what was asked."""

from __future__ import annotations


class StoreError(Exception):
    """The database cannot be used (newer schema, not a benchwatch database, unreadable)."""


class LeaseLostError(StoreError):
    """A replica tried to commit a job whose lease it no longer holds (fencing): nothing was written."""


class StoreWriteError(StoreError):
    """A write failed and nothing of it was recorded: a full disk, a read-only or damaged file or database (on
    PostgreSQL: SQLSTATE 53100, 58030, 25006). Usually passing: the caller keeps what it meant to write and tries
    again. A lost connection is a plain `StoreError` (the store is unreachable)."""
