"""The embedded SQLite store: zero set-up, one file, transactions for every poll, a versioned schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from watcher.diff import JobMemory
from watcher.events import Event, event_from_json, event_to_json
from watcher.notification import Notification
from watcher.store.base import StateRow, StoredEvent

# Each entry moves the schema one version up; never edit a released one, append another.
MIGRATIONS: Final[tuple[str, ...]] = (
    """
    CREATE TABLE jobs (
        job_id      TEXT PRIMARY KEY,
        memory      TEXT NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE events (
        seq     INTEGER PRIMARY KEY AUTOINCREMENT,
        id      TEXT NOT NULL UNIQUE,
        job_id  TEXT NOT NULL,
        kind    TEXT NOT NULL,
        at_ms   INTEGER NOT NULL,
        body    TEXT NOT NULL
    );
    CREATE INDEX events_by_job ON events (job_id, seq);
    """,
    """
    CREATE TABLE state_rows (
        namespace   TEXT NOT NULL,
        key         TEXT NOT NULL,
        body        TEXT NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    CREATE TABLE outbox (
        id          TEXT PRIMARY KEY,
        notifier    TEXT NOT NULL,
        rule        TEXT NOT NULL,
        created_ms  INTEGER NOT NULL,
        body        TEXT NOT NULL,
        status      TEXT NOT NULL DEFAULT 'pending'
    );
    CREATE INDEX outbox_by_status ON outbox (status, created_ms);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


class StoreError(Exception):
    """The database cannot be used (newer schema, not a benchwatch database, unreadable)."""


class SQLiteStore:
    """`Store` on an SQLite file (or `":memory:"`), created and migrated on open.

    `step_hook`, when given, is called with the name of each step of a commit; tests raise from it to
    interrupt a commit at every point and prove that nothing is half-recorded.
    """

    def __init__(self, path: str | Path = "benchwatch.db", *, step_hook: Callable[[str], None] | None = None) -> None:
        self.path = str(path)
        self._step_hook = step_hook
        self._db: aiosqlite.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file (creating it and its folder), then bring the schema up to date."""
        if self._db is not None:
            return
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=FULL")
            await self._db.execute("PRAGMA busy_timeout=5000")
            await self._migrate()
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StoreError(f"{self.path}: cannot use as a benchwatch database: {exc}") from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; an unfinished transaction is rolled back."""
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def _migrate(self) -> None:
        db = self._conn()
        await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        async with db.execute("SELECT version FROM schema_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema v{version} is newer than this benchwatch (v{SCHEMA_VERSION}); upgrade"
            )
        for number in range(version, SCHEMA_VERSION):
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    await db.execute(statement)
                await db.execute("DELETE FROM schema_version")
                await db.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: store is not open")
        return self._db

    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    async def load_memory(self, job_id: str) -> JobMemory | None:
        """What the watcher knew of a job, or None."""
        async with self._conn().execute("SELECT memory FROM jobs WHERE job_id = ?", (job_id,)) as cursor:
            row = await cursor.fetchone()
        return JobMemory.model_validate_json(row[0]) if row else None

    async def load_memories(self) -> dict[str, JobMemory]:
        """Every job's memory, by job id."""
        async with self._conn().execute("SELECT job_id, memory FROM jobs ORDER BY job_id") as cursor:
            rows = await cursor.fetchall()
        return {row[0]: JobMemory.model_validate_json(row[1]) for row in rows}

    async def commit(
        self,
        *,
        memory: JobMemory | None = None,
        events: Sequence[Event] = (),
        state_rows: Sequence[StateRow] = (),
        notifications: Sequence[Notification] = (),
    ) -> int:
        """Record a poll's consequences in one transaction; returns how many events were new."""
        db = self._conn()
        self._step("begin")
        await db.execute("BEGIN IMMEDIATE")
        try:
            if memory is not None:
                await db.execute(
                    "INSERT INTO jobs (job_id, memory, updated_ms) VALUES (?, ?, ?)"
                    " ON CONFLICT (job_id) DO UPDATE SET memory = excluded.memory, updated_ms = excluded.updated_ms",
                    (memory.job_id, memory.model_dump_json(), memory.last_seen_ms),
                )
                self._step("memory")
            added = await self._insert_events(db, events)
            await self._write_state_rows(db, state_rows)
            await self._insert_notifications(db, notifications)
            self._step("before_commit")
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        self._step("after_commit")
        return added

    async def _insert_events(self, db: aiosqlite.Connection, events: Sequence[Event]) -> int:
        added = 0
        for index, event in enumerate(events):
            cursor = await db.execute(
                "INSERT OR IGNORE INTO events (id, job_id, kind, at_ms, body) VALUES (?, ?, ?, ?, ?)",
                (event.id, event.job_id, event.kind, event.at_ms, event_to_json(event)),
            )
            added += cursor.rowcount
            self._step(f"event:{index}")
        return added

    async def _write_state_rows(self, db: aiosqlite.Connection, rows: Sequence[StateRow]) -> None:
        for index, row in enumerate(rows):
            if row.body is None:
                await db.execute("DELETE FROM state_rows WHERE namespace = ? AND key = ?", (row.namespace, row.key))
            else:
                await db.execute(
                    "INSERT INTO state_rows (namespace, key, body) VALUES (?, ?, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET body = excluded.body",
                    (row.namespace, row.key, row.body),
                )
            self._step(f"state:{index}")

    async def _insert_notifications(self, db: aiosqlite.Connection, notifications: Sequence[Notification]) -> None:
        for index, notification in enumerate(notifications):
            await db.execute(
                "INSERT OR IGNORE INTO outbox (id, notifier, rule, created_ms, body) VALUES (?, ?, ?, ?, ?)",
                (
                    notification.id,
                    notification.notifier,
                    notification.rule,
                    notification.created_ms,
                    notification.model_dump_json(),
                ),
            )
            self._step(f"notification:{index}")

    async def get_state(self, namespace: str, key: str) -> str | None:
        """One state row's body, or None."""
        async with self._conn().execute(
            "SELECT body FROM state_rows WHERE namespace = ? AND key = ?", (namespace, key)
        ) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def put_state(self, namespace: str, key: str, body: str) -> None:
        """Write one state row on its own (committed at once)."""
        await self.commit(state_rows=[StateRow(namespace, key, body)])

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace, by key."""
        async with self._conn().execute(
            "SELECT key, body FROM state_rows WHERE namespace = ? ORDER BY key", (namespace,)
        ) as cursor:
            rows = await cursor.fetchall()
        return [StateRow(namespace, str(row[0]), str(row[1])) for row in rows]

    async def outbox(self, *, status: str | None = "pending", limit: int = 1000) -> list[Notification]:
        """Notifications in the outbox, oldest first (all statuses with `status=None`)."""
        query = "SELECT body FROM outbox"
        params: list[object] = []
        if status is not None:
            query += " WHERE status = ?"
            params.append(status)
        query += " ORDER BY created_ms, id LIMIT ?"
        params.append(limit)
        async with self._conn().execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [Notification.model_validate_json(row[0]) for row in rows]

    async def events(self, *, job_id: str | None = None, since_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Recorded events in recording order, after `since_seq`, optionally of one job."""
        query = "SELECT seq, body FROM events WHERE seq > ?"
        params: list[object] = [since_seq]
        if job_id is not None:
            query += " AND job_id = ?"
            params.append(job_id)
        query += " ORDER BY seq LIMIT ?"
        params.append(limit)
        async with self._conn().execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [StoredEvent(int(row[0]), event_from_json(row[1])) for row in rows]


def _statements(script: str) -> list[str]:
    """The statements of a migration script (our scripts hold no ';' inside literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]
