"""The store: the watcher's durable memory — job memories, events, the outbox, rule state — behind one protocol.

`open_store(location)` is the one place a backend is chosen: a `postgresql://` (or `postgres://`) URL is
PostgreSQL, for several replicas; anything else is an SQLite file path (or `:memory:`), for one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from watcher.store.location import is_postgres_url
from watcher.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from watcher.store.postgres import PostgresStore


def open_store(
    location: str | Path, *, exclusive: bool = False, lease_ttl_ms: int | None = None, caller_clock: bool = False
) -> SQLiteStore | PostgresStore:
    """The store at `location`, not yet opened: use it as `async with open_store(...) as store`.

    `exclusive`: the watcher's own use — an SQLite file is then refused to a second such process; a PostgreSQL
    database is shared by design (replicas coordinate through leases of `lease_ttl_ms`, timed by the database's
    clock, or with `caller_clock` by the `now_ms` the caller passes: tests on a manual clock)."""
    if isinstance(location, str) and is_postgres_url(location):
        # Imported only when used: the driver costs ~0.2 s of start-up that SQLite users should not pay.
        from watcher.store.postgres import PostgresStore

        if lease_ttl_ms is None:
            return PostgresStore(location, caller_clock=caller_clock)
        return PostgresStore(location, lease_ttl_ms=lease_ttl_ms, caller_clock=caller_clock)
    return SQLiteStore(location, exclusive=exclusive)
