"""The store: the watcher's durable memory — job memories, events, the outbox, rule state — behind one protocol.

`open_store(location)` is the one place a backend is chosen: a file path (or `:memory:`) is SQLite.
"""

from __future__ import annotations

from pathlib import Path

from watcher.store.sqlite import SQLiteStore


def open_store(location: str | Path) -> SQLiteStore:
    """The store at `location`, not yet opened: use it as `async with open_store(...) as store`."""
    return SQLiteStore(location)
