"""`FileChanges`: a running watcher's SQLite listener sleeps until another connection writes the database's files
(inotify), instead of looking five times a second — and does not wake for other files of the folder."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path

import pytest

from watcher.store.filewatch import FileChanges

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="inotify is Linux's")


def _database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("CREATE TABLE t (x INTEGER)")
    return db


async def _pending(wait: asyncio.Task[None]) -> bool:
    """Whether the wait is still under way after the event loop has had a quarter of a second to end it."""
    done, _ = await asyncio.wait({wait}, timeout=0.25)
    return not done


async def test_a_commit_of_another_connection_ends_the_wait_and_nothing_else_does(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = _database(path)
    with contextlib.closing(FileChanges(str(path))) as changes, contextlib.closing(db):
        assert changes.watching
        wait = asyncio.create_task(changes.wait())
        assert await _pending(
            wait
        )  # nothing written since the watch began (the table was created before it): it sleeps
        (tmp_path / "benchwatch.log").write_text("another file of the folder")
        assert await _pending(wait)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("INSERT INTO t VALUES (1)")  # `benchwatch deliveries retry`, say
        other.close()
        await asyncio.wait_for(wait, timeout=5)


async def test_the_write_ahead_log_coming_and_going_is_seen(tmp_path: Path) -> None:
    """The `-wal` file is removed when the last connection closes and created again by the next write."""
    path = tmp_path / "state.db"
    _database(path).close()  # the last connection: the -wal file is checkpointed and removed
    assert not (tmp_path / "state.db-wal").exists()
    with contextlib.closing(FileChanges(str(path))) as changes:
        wait = asyncio.create_task(changes.wait())
        assert await _pending(wait)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("INSERT INTO t VALUES (1)")
        await asyncio.wait_for(wait, timeout=5)
        db.close()


async def test_a_folder_that_cannot_be_watched_leaves_the_pacing_to_the_caller(tmp_path: Path) -> None:
    changes = FileChanges(str(tmp_path / "gone" / "state.db"))  # no such folder: nothing to watch
    assert not changes.watching
    await asyncio.wait_for(changes.wait(), timeout=1)  # at once: the listener looks on its own interval
    changes.close()
