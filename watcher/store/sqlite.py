"""The embedded SQLite store: zero set-up, one file, transactions for every poll, a versioned schema."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Final

import aiosqlite

from watcher.diff import JobMemory
from watcher.events import Event, event_from_json, event_to_json
from watcher.notification import Notification
from watcher.store.base import DeliveryAttempt, OutboxItem, StateRow, StoredEvent

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
    """
    ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN next_attempt_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE outbox ADD COLUMN last_reason TEXT;
    ALTER TABLE outbox ADD COLUMN last_error TEXT;
    ALTER TABLE outbox ADD COLUMN done_ms INTEGER;
    CREATE INDEX outbox_due ON outbox (status, next_attempt_ms);
    CREATE TABLE deliveries (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        notification_id TEXT NOT NULL,
        notifier        TEXT NOT NULL,
        attempt         INTEGER NOT NULL,
        started_ms      INTEGER NOT NULL,
        finished_ms     INTEGER NOT NULL,
        outcome         TEXT NOT NULL,
        reason          TEXT,
        error           TEXT
    );
    CREATE INDEX deliveries_by_notification ON deliveries (notification_id, seq);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
_OUTBOX_COLUMNS: Final = "body, status, attempts, next_attempt_ms, last_reason, last_error, done_ms"


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
        # One connection serves every task: write transactions take turns, or BEGIN would nest.
        self._write_lock = asyncio.Lock()

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
        async with self._write_lock:
            return await self._commit(memory, events, state_rows, notifications)

    async def _commit(
        self,
        memory: JobMemory | None,
        events: Sequence[Event],
        state_rows: Sequence[StateRow],
        notifications: Sequence[Notification],
    ) -> int:
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

    async def outbox_items(self, *, status: str | None = None, limit: int = 1000) -> list[OutboxItem]:
        """Outbox entries, oldest first, optionally of one status (pending, sent, dead)."""
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
        params: list[object] = []
        if status is not None:
            query += " WHERE status = ?"
            params.append(status)
        query += " ORDER BY created_ms, id LIMIT ?"
        params.append(limit)
        return await self._outbox_query(query, params)

    async def outbox_item(self, notification_id: str) -> OutboxItem | None:
        """One outbox entry by notification id (a unique prefix of at least 6 characters also finds it)."""
        items = await self._outbox_query(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE id = ? OR (length(?) >= 6 AND id LIKE ? || '%') LIMIT 2",
            [notification_id, notification_id, notification_id],
        )
        return items[0] if len(items) == 1 else None

    async def due_notifications(
        self, now_ms: int, *, limit: int = 200, exclude: Collection[str] = ()
    ) -> list[OutboxItem]:
        """Pending notifications whose next attempt is due, the longest-waiting first, but for `exclude`
        (those in flight: not read and parsed again)."""
        excluded = " AND id NOT IN (SELECT value FROM json_each(?))" if exclude else ""
        params: list[object] = [now_ms, *([json.dumps(list(exclude))] if exclude else []), limit]
        return await self._outbox_query(
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?{excluded}"
            " ORDER BY next_attempt_ms, created_ms, id LIMIT ?",
            params,
        )

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        """When the next pending notification is due (later than `after_ms`), if any."""
        async with self._conn().execute(
            "SELECT min(next_attempt_ms) FROM outbox WHERE status = 'pending' AND next_attempt_ms > ?", (after_ms,)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row and row[0] is not None else None

    async def record_delivery(self, attempt: DeliveryAttempt, *, status: str, next_attempt_ms: int) -> None:
        """Record one delivery attempt and the notification's new status, in one transaction."""
        async with self._write_lock:
            await self._record_delivery(attempt, status, next_attempt_ms)

    async def _record_delivery(self, attempt: DeliveryAttempt, status: str, next_attempt_ms: int) -> None:
        db = self._conn()
        self._step("delivery:begin")
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.execute(
                "INSERT INTO deliveries (notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason,"
                " error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    attempt.notification_id,
                    attempt.notifier,
                    attempt.attempt,
                    attempt.started_ms,
                    attempt.finished_ms,
                    attempt.outcome,
                    attempt.reason,
                    attempt.error,
                ),
            )
            await db.execute(
                "UPDATE outbox SET status = ?, attempts = ?, next_attempt_ms = ?, last_reason = ?, last_error = ?,"
                " done_ms = ? WHERE id = ?",
                (
                    status,
                    attempt.attempt,
                    next_attempt_ms,
                    attempt.reason,
                    attempt.error,
                    attempt.finished_ms if status != "pending" else None,
                    attempt.notification_id,
                ),
            )
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        self._step("delivery:after_commit")

    async def requeue(self, notification_id: str, now_ms: int) -> bool:
        """Send a dead-lettered (or sent) notification again: back to pending, due now."""
        async with self._write_lock:
            cursor = await self._conn().execute(
                "UPDATE outbox SET status = 'pending', next_attempt_ms = ?, done_ms = NULL WHERE id = ?",
                (now_ms, notification_id),
            )
        return cursor.rowcount == 1

    async def deliveries(self, notification_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of one notification, in order."""
        async with self._conn().execute(
            "SELECT notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason, error"
            " FROM deliveries WHERE notification_id = ? ORDER BY seq",
            (notification_id,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [DeliveryAttempt(*row) for row in rows]

    async def outbox_counts(self) -> dict[str, int]:
        """How many notifications are pending, sent and dead."""
        async with self._conn().execute("SELECT status, count(*) FROM outbox GROUP BY status") as cursor:
            rows = await cursor.fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    async def _outbox_query(self, query: str, params: list[object]) -> list[OutboxItem]:
        async with self._conn().execute(query, params) as cursor:
            rows = await cursor.fetchall()
        return [
            OutboxItem(
                notification=Notification.model_validate_json(row[0]),
                status=row[1],
                attempts=row[2],
                next_attempt_ms=row[3],
                last_reason=row[4],
                last_error=row[5],
                done_ms=row[6],
            )
            for row in rows
        ]

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
