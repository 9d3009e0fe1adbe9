"""The embedded SQLite store: zero set-up, one file, transactions for every poll, a versioned schema.

The connection lives on one thread of its own, and every call runs there whole: a poll's transaction is one hop
from the event loop and back, not one per statement (at scale those hops were a large share of a cycle's CPU), and
a cancelled caller can never leave a transaction half-open — the thread finishes it either way.

Writes are committed in groups: the writes queued while the thread was busy go into one transaction, each in a
savepoint of its own, so many polls share one COMMIT — one fsync — while each still lands whole or not at all,
and each caller returns only once its write is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import queue
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

from watcher.core.decisions import Decision, decisions_from_body
from watcher.core.events import Event, event_from_json, event_to_json
from watcher.core.memory import JobMemory
from watcher.core.notification import Notification
from watcher.core.records import DeliveryAttempt, LoggedDelivery, OutboxItem, OutboxStatus, StateRow
from watcher.store.errors import StoreError, StoreWriteError
from watcher.store.filelock import StateFileLock
from watcher.store.filewatch import FileChanges
from watcher.store.protocol import Holding, SectionReads, SectionView, StoredEvent, Taker
from watcher.store.rows import (
    DELIVERY_COLUMNS,
    MIN_PREFIX_CHARS,
    OUTBOX_COLUMNS,
    decision_rows,
    delivery_log_query,
    events_query,
    logged_deliveries,
    read_delivery_attempt,
    read_outbox_item,
)

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
    # What routing decided for each event and rule (`watcher.core.decisions`): one row per event and commit; the
    # HTTP status of each failed delivery attempt and the job of each notification (for the delivery log).
    """
    CREATE TABLE decisions (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id    TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        body        TEXT NOT NULL
    );
    CREATE INDEX decisions_by_event ON decisions (event_id, seq);
    ALTER TABLE deliveries ADD COLUMN http_status INTEGER;
    ALTER TABLE outbox ADD COLUMN job_id TEXT;
    UPDATE outbox SET job_id = json_extract(body, '$.events[0].job_id');
    CREATE INDEX outbox_by_job ON outbox (job_id, created_ms);
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
# How often at most a running watcher asks SQLite whether another process (the CLI: `deliveries retry`, `silences
# add`) committed to its file — only after a write to the file was seen, where inotify is had (`listen`).
LISTEN_INTERVAL_S: Final = 0.2
# How old the files' newest time of change must be before their stamp is a mark of the store (`write_mark`): more
# than the coarsest clock a file system stamps writes with (2 s on FAT).
SETTLED_NS: Final = 3_000_000_000


P = ParamSpec("P")
T = TypeVar("T")


class SQLiteStore:
    """`Store` on an SQLite file (or `":memory:"`), created and migrated on open.

    With `exclusive` (what `benchwatch run` asks for), the file is this process's alone: a second process asking
    the same is refused at open (read commands open it without). `step_hook`, when given, is called with the name
    of each step of a commit; tests raise from it to interrupt a commit at every point and prove that nothing is
    half-recorded.
    """

    holder = "this process"  # the one replica an SQLite file has
    shared = False
    reachable = True  # a local file: its errors are not outages

    def __init__(
        self,
        path: str | Path = "benchwatch.db",
        *,
        step_hook: Callable[[str], None] | None = None,
        exclusive: bool = False,
    ) -> None:
        self.path = str(path)
        self._files = _database_files(self.path)
        self._step_hook = step_hook
        self._lock = StateFileLock(self.path) if exclusive and self.path != ":memory:" else None
        self._db: sqlite3.Connection | None = None
        # One thread owns the connection and runs one call at a time: transactions never interleave.
        self._thread: ThreadPoolExecutor | None = None
        self._writes: queue.SimpleQueue[_Write] = queue.SimpleQueue()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    async def __aenter__(self) -> SQLiteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the file (creating it and its folder), then bring the schema up to date."""
        if self._thread is not None:
            return
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path}: cannot create its folder: {exc.strerror or exc}") from None
        if self._lock is not None:
            self._lock.acquire()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="benchwatch-sqlite")
        try:
            await self._run(self._open)
        except sqlite3.DatabaseError as exc:
            await self.close()
            raise StoreError(f"{self.path}: cannot use as a benchwatch database: {exc}") from None
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the connection; an unfinished transaction is rolled back."""
        if self._thread is None:
            return
        thread = self._thread
        try:
            await asyncio.get_running_loop().run_in_executor(thread, self._close)
        finally:
            self._thread = None
            thread.shutdown(wait=False)
            if self._lock is not None:
                self._lock.release()

    async def _run(self, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`call` on the connection's thread."""
        if self._thread is None:
            raise StoreError(f"{self.path}: store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._thread, lambda: call(*args, **kwargs))

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in a write transaction, shared with the writes queued beside it; returns once committed."""
        if self._thread is None:
            raise StoreError(f"{self.path}: store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(work, future))
        self._thread.submit(self._commit_queued, loop)  # finds the queue empty if an earlier one took this write
        try:
            return await future
        except sqlite3.Error as exc:  # SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR, …: nothing of it was written
            raise StoreWriteError(f"{self.path}: cannot write: {exc}") from exc

    async def limit_pages(self, max_pages: int) -> int:
        """Cap the file at `max_pages` pages (never below its current size); returns the cap now in force. A quota
        for the state — and how tests make a disk full anywhere, without a small filesystem."""
        return await self._run(self._max_page_count, max_pages)

    # -- on the connection's thread ---------------------------------------------------------------

    def _data_version(self) -> int:
        return int(self._conn().execute("PRAGMA data_version").fetchone()[0])

    def _max_page_count(self, max_pages: int) -> int:
        return int(self._conn().execute(f"PRAGMA max_page_count = {int(max_pages)}").fetchone()[0])

    def _open(self) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    def _close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            db.close()

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: store is not open")
        return self._db

    def _migrate(self) -> None:
        db = self._conn()
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema v{version} is newer than this benchwatch (v{SCHEMA_VERSION}); upgrade"
            )
        for number in range(version, SCHEMA_VERSION):
            with _Transaction(db):
                for statement in _statements(MIGRATIONS[number]):
                    db.execute(statement)
                db.execute("DELETE FROM schema_version")
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (number + 1,))

    def _commit_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every queued write in one transaction, each in its own savepoint; then tell their callers."""
        batch: list[_Write] = []
        with contextlib.suppress(queue.Empty):
            while True:
                batch.append(self._writes.get_nowait())
        if not batch:
            return
        outcomes: list[tuple[_Write, object, BaseException | None]] = []
        try:
            db = self._conn()
            self._step("begin")
            with _Transaction(db):
                for write in batch:
                    outcomes.append(_in_savepoint(db, write))
                self._step("before_commit")
            self._step("after_commit")
        except BaseException as exc:  # nothing of the batch is known to be durable: every caller hears it
            outcomes = [(write, None, exc) for write in batch]
        loop.call_soon_threadsafe(_settle, outcomes)

    def _select(self, query: str, params: Sequence[object] = ()) -> list[Any]:
        return self._conn().execute(query, params).fetchall()

    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    # -- Coordination: one process holds everything ------------------------------------------------

    async def hold(self, job_ids: Collection[str], now_ms: int, *, rested: Collection[str] = ()) -> Holding:
        """Every job and the rule timers: an SQLite file has one process."""
        return Holding(frozenset(job_ids), frozenset(), timers=True)

    async def lease_holders(self) -> dict[str, str]:
        """No leases on SQLite."""
        return {}

    @contextlib.asynccontextmanager
    async def rules_section(
        self, reads: SectionReads | Callable[[], SectionReads] | None = None
    ) -> AsyncIterator[SectionView]:
        """One process: its tracker already serialises its rule state; `reads` are plain reads."""
        reads = reads() if callable(reads) else reads
        if reads is None:
            yield SectionView()
            return
        body = await self.get_state(*reads.row)
        rows = []
        if reads.after is not None:
            query = "SELECT key, body FROM state_rows WHERE namespace = ? AND key > ? ORDER BY key"
            rows = await self._run(self._select, query, (reads.namespace, reads.after))
        yield SectionView(body, tuple(StateRow(reads.namespace, str(key), str(row)) for key, row in rows))

    async def outbox_claims(self) -> int:
        """No claims on SQLite: the one worker sends everything."""
        return 0

    def write_mark(self, namespace: str) -> tuple[int, ...] | None:
        """The database files' stamp (`_file_stamp`: two `stat` calls, no read of the database) — once their
        newest time of change is SETTLED_NS old. A commit writes to the files, and the kernel stamps a write with
        a coarse clock (a few ms on Linux; whole seconds on some file systems): a write within that tick of the
        last one could leave the stamp as it was. A stamp older than that cannot stay equal through a write, so
        equal settled marks mean nothing was committed; a fresher stamp is no mark (None)."""
        if self.path == ":memory:":
            return None
        stamp = _file_stamp(self._files)
        if stamp is None or time.time_ns() - max(stamp[1::3]) < SETTLED_NS:
            return None
        return stamp

    @property
    def hands_over_commits(self) -> bool:
        """Never: this process's own commits wake its worker, which reads what is due (`taker` is not used)."""
        return False

    async def listen(self, wake: Callable[[], None], taker: Taker | None = None) -> None:
        """Call `wake` whenever another process commits to this file (`benchwatch deliveries retry` while the
        watcher runs), until cancelled: `PRAGMA data_version` moves only for other connections' commits — this
        process's own wake its worker directly. It is asked when a write to the database's files was seen
        (inotify: `FileChanges`), at most every LISTEN_INTERVAL_S — a watcher at rest does not wake for it at all
        (five looks a second were half of the wake-ups of a watcher at rest on ten jobs) — and, where inotify
        cannot be had, every LISTEN_INTERVAL_S. `wake` is also called after the first reading, for what was
        committed before it.

        Asking the store's own connection takes a round trip to its thread (two wake-ups of the process); a
        sentinel connection on the event loop's thread asks first, in microseconds, whether anyone — this process
        included — committed since the last look, and only then is the store's connection asked whose it was."""
        if self.path == ":memory:":  # no other process can open it
            return
        seen: int | None = None
        with contextlib.closing(_Sentinel(self.path)) as sentinel, contextlib.closing(FileChanges(self.path)) as files:
            while True:
                if sentinel.moved():
                    try:
                        version = await self._run(self._data_version)
                    except (StoreError, sqlite3.Error):  # closing, or the file is away: the next reading tells
                        version = None
                        sentinel.forget()
                    if version is not None and version != seen:
                        seen = version
                        wake()
                await asyncio.sleep(LISTEN_INTERVAL_S)  # this process's own commits come in bursts: a look at most
                await files.wait()

    # -- the Store interface ----------------------------------------------------------------------

    async def load_memory(self, job_id: str) -> JobMemory | None:
        """What the watcher knew of a job, or None."""
        rows = await self._run(self._select, "SELECT memory FROM jobs WHERE job_id = ?", (job_id,))
        return JobMemory.model_validate_json(rows[0][0]) if rows else None

    async def load_memories(self) -> dict[str, JobMemory]:
        """Every job's memory, by job id."""
        rows = await self._run(self._select, "SELECT job_id, memory FROM jobs ORDER BY job_id")
        return {row[0]: JobMemory.model_validate_json(row[1]) for row in rows}

    async def commit(
        self,
        *,
        memory: JobMemory | None = None,
        events: Sequence[Event] = (),
        state_rows: Sequence[StateRow] = (),
        notifications: Sequence[Notification] = (),
        decisions: Sequence[Decision] = (),
        announce: bool = False,
    ) -> None:
        """Record a poll's consequences in one transaction (an event already recorded is left as it is);
        `announce` needs nothing more: the files' stamp is every reader's `write_mark`."""
        rows = _PollRows(
            memory=(memory.job_id, memory.model_dump_json(), memory.last_seen_ms) if memory is not None else None,
            events=[(e.id, e.job_id, e.kind, e.at_ms, event_to_json(e)) for e in events],
            state=[(row.namespace, row.key, row.body) for row in state_rows],
            outbox=[(n.id, n.notifier, n.rule, n.created_ms, n.model_dump_json(), n.job_id) for n in notifications],
            decisions=decision_rows(decisions),
        )
        await self._write(functools.partial(self._record_poll, rows))

    def _record_poll(self, rows: _PollRows, db: sqlite3.Connection) -> None:
        memory_row, event_rows, state, outbox_rows = rows.memory, rows.events, rows.state, rows.outbox
        if memory_row is not None:
            db.execute(
                "INSERT INTO jobs (job_id, memory, updated_ms) VALUES (?, ?, ?)"
                " ON CONFLICT (job_id) DO UPDATE SET memory = excluded.memory, updated_ms = excluded.updated_ms",
                memory_row,
            )
            self._step("memory")
        for index, event_row in enumerate(event_rows):
            db.execute("INSERT OR IGNORE INTO events (id, job_id, kind, at_ms, body) VALUES (?, ?, ?, ?, ?)", event_row)
            self._step(f"event:{index}")
        for index, (namespace, key, body) in enumerate(state):
            if body is None:
                db.execute("DELETE FROM state_rows WHERE namespace = ? AND key = ?", (namespace, key))
            else:
                db.execute(
                    "INSERT INTO state_rows (namespace, key, body) VALUES (?, ?, ?)"
                    " ON CONFLICT (namespace, key) DO UPDATE SET body = excluded.body",
                    (namespace, key, body),
                )
            self._step(f"state:{index}")
        for index, outbox_row in enumerate(outbox_rows):
            db.execute(
                "INSERT OR IGNORE INTO outbox (id, notifier, rule, created_ms, body, job_id) VALUES (?, ?, ?, ?, ?, ?)",
                outbox_row,
            )
            self._step(f"notification:{index}")
        for index, decision_row in enumerate(rows.decisions):
            db.execute("INSERT INTO decisions (event_id, at_ms, body) VALUES (?, ?, ?)", decision_row)
            self._step(f"decisions:{index}")

    async def get_state(self, namespace: str, key: str) -> str | None:
        """One state row's body, or None."""
        rows = await self._run(
            self._select, "SELECT body FROM state_rows WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return str(rows[0][0]) if rows else None

    async def put_state(self, namespace: str, key: str, body: str) -> None:
        """Write one state row on its own (committed at once)."""
        await self.commit(state_rows=[StateRow(namespace, key, body)])

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace, by key."""
        rows = await self._run(
            self._select, "SELECT key, body FROM state_rows WHERE namespace = ? ORDER BY key", (namespace,)
        )
        return [StateRow(namespace, str(row[0]), str(row[1])) for row in rows]

    async def load_state_range(self, namespace: str, first_key: str, last_key: str) -> list[StateRow]:
        """The state rows of a namespace from `first_key` to `last_key` (both included, bytewise), by key."""
        rows = await self._run(
            self._select,
            "SELECT key, body FROM state_rows WHERE namespace = ? AND key BETWEEN ? AND ? ORDER BY key",
            (namespace, first_key, last_key),
        )
        return [StateRow(namespace, str(row[0]), str(row[1])) for row in rows]

    async def outbox_items(
        self, *, status: str | None = None, limit: int = 1000, newest_first: bool = False
    ) -> list[OutboxItem]:
        """Outbox entries, oldest (or newest) first, optionally of one status (pending, sent, dead)."""
        query = f"SELECT {OUTBOX_COLUMNS} FROM outbox"
        params: list[object] = []
        if status is not None:
            query += " WHERE status = ?"
            params.append(status)
        query += " ORDER BY created_ms DESC, id DESC LIMIT ?" if newest_first else " ORDER BY created_ms, id LIMIT ?"
        params.append(limit)
        return await self._outbox_query(query, params)

    async def outbox_item(self, notification_id: str) -> OutboxItem | None:
        """One outbox entry by notification id (a unique prefix of at least 6 characters also finds it)."""
        items = await self._outbox_query(
            # a prefix compared as text, not a LIKE pattern: `%` and `_` in it are no wildcards
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1 OR (length(?1) >= 6 AND substr(id, 1, length(?1)) = ?1)"
            " LIMIT 2",
            [notification_id],
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
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE status = 'pending' AND next_attempt_ms <= ?{excluded}"
            " ORDER BY next_attempt_ms, created_ms, id LIMIT ?",
            params,
        )

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        """When the next pending notification is due (later than `after_ms`), if any."""
        rows = await self._run(
            self._select,
            "SELECT min(next_attempt_ms) FROM outbox WHERE status = 'pending' AND next_attempt_ms > ?",
            (after_ms,),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    async def record_delivery(self, attempt: DeliveryAttempt, *, status: OutboxStatus, next_attempt_ms: int) -> None:
        """Record one delivery attempt and the notification's new status, in one transaction."""
        await self._write(functools.partial(self._record_attempt, attempt, status, next_attempt_ms))

    def _record_attempt(
        self, attempt: DeliveryAttempt, status: OutboxStatus, next_attempt_ms: int, db: sqlite3.Connection
    ) -> None:
        db.execute(
            "INSERT INTO deliveries (notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason,"
            " error, http_status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                attempt.notification_id,
                attempt.notifier,
                attempt.attempt,
                attempt.started_ms,
                attempt.finished_ms,
                attempt.outcome,
                attempt.reason,
                attempt.error,
                attempt.http_status,
            ),
        )
        self._step("delivery:attempt")
        db.execute(
            "UPDATE outbox SET status = ?, attempts = ?, next_attempt_ms = ?, last_reason = ?, last_error = ?,"
            " done_ms = ? WHERE id = ?",
            (
                status,
                attempt.attempt,
                next_attempt_ms,
                attempt.reason,
                attempt.error,
                attempt.finished_ms if status != OutboxStatus.PENDING else None,
                attempt.notification_id,
            ),
        )

    async def requeue(self, notification_id: str, now_ms: int) -> bool:
        """Send a dead-lettered (or sent) notification again: back to pending, due now."""
        return await self._write(functools.partial(_requeue, notification_id, now_ms))

    async def deliveries(self, notification_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of one notification, in order."""
        rows = await self._run(
            self._select,
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id = ? ORDER BY seq",
            (notification_id,),
        )
        return [read_delivery_attempt(row) for row in rows]

    async def delivery_log(
        self,
        *,
        job_id: str | None = None,
        rule: str | None = None,
        notifier: str | None = None,
        status: str | None = None,
        limit: int = 100,
    ) -> list[LoggedDelivery]:
        """Notifications newest first, each with its attempts, optionally of one job, rule, notifier and status
        (`interrupted`: with an interrupted attempt)."""
        query, params = delivery_log_query("?", job_id=job_id, rule=rule, notifier=notifier, status=status, limit=limit)
        items = await self._outbox_query(query, params)
        if not items:
            return []
        rows = await self._run(
            self._select,
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries"
            " WHERE notification_id IN (SELECT value FROM json_each(?)) ORDER BY seq",
            (json.dumps([item.notification.id for item in items]),),
        )
        return logged_deliveries(items, [read_delivery_attempt(row) for row in rows])

    async def outbox_counts(self) -> dict[str, int]:
        """How many notifications are pending, sent and dead."""
        rows = await self._run(self._select, "SELECT status, count(*) FROM outbox GROUP BY status")
        return {str(row[0]): int(row[1]) for row in rows}

    async def _outbox_query(self, query: str, params: list[object]) -> list[OutboxItem]:
        rows = await self._run(self._select, query, params)
        return [read_outbox_item(row) for row in rows]

    async def events(
        self,
        *,
        job_id: str | None = None,
        since_seq: int = 0,
        limit: int = 1000,
        kind: str | None = None,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Recorded events in recording order (or newest first), after `since_seq`, optionally of one job and
        one kind."""
        query, params = events_query(
            "?", job_id=job_id, since_seq=since_seq, limit=limit, kind=kind, newest_first=newest_first
        )
        rows = await self._run(self._select, query, params)
        return [StoredEvent(int(row[0]), event_from_json(row[1])) for row in rows]

    async def event(self, event_id: str) -> StoredEvent | None:
        """One recorded event by id (a unique prefix of at least 6 characters also finds it)."""
        query = "SELECT seq, body FROM events WHERE id = ?"
        rows = await self._run(self._select, query, (event_id,))
        if not rows and len(event_id) >= MIN_PREFIX_CHARS:
            query = "SELECT seq, body FROM events WHERE substr(id, 1, ?) = ? LIMIT 2"
            rows = await self._run(self._select, query, (len(event_id), event_id))
        return StoredEvent(int(rows[0][0]), event_from_json(rows[0][1])) if len(rows) == 1 else None

    async def decisions(self, event_id: str) -> list[Decision]:
        """What routing decided for one event, for each rule, in the order it was decided."""
        rows = await self._run(self._select, "SELECT body FROM decisions WHERE event_id = ? ORDER BY seq", (event_id,))
        return [decision for row in rows for decision in decisions_from_body(event_id, row[0])]


class _Transaction:
    """`with`: BEGIN IMMEDIATE, then COMMIT — or ROLLBACK on any exception, an interruption or a failed COMMIT
    included."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            try:
                self._db.execute("COMMIT")
                return
            except BaseException:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")


class _Sentinel:
    """A read-only connection on the event loop's thread that tells whether any connection committed to the file
    since it last looked (its `PRAGMA data_version` moves for every commit but its own, and it makes none)."""

    def __init__(self, path: str) -> None:
        self._db: sqlite3.Connection | None = None
        self._last: int | None = None
        self._files = _database_files(path)
        self._stamp: tuple[int, ...] | None = None
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(path, isolation_level=None)
            db.execute("PRAGMA query_only = 1")
            db.execute("PRAGMA busy_timeout = 0")  # never wait on the loop's thread: a busy file counts as moved
            self._db = db

    def moved(self) -> bool:
        """True when a commit may have happened since the last call (always, when the file cannot be asked).

        A commit writes to the database's files — in WAL mode to the `-wal` file, which a checkpoint then resets —
        so while neither file's size nor time of change moved, nothing was committed: two `stat` calls answer,
        not a read of the database (its locks and shared-memory index: a fifth of a millisecond, five times a
        second, was 40 % of what a watcher with nothing to poll spent)."""
        stamp = _file_stamp(self._files)
        if stamp is not None and stamp == self._stamp and self._last is not None:
            return False
        self._stamp = stamp
        version = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        moved = version is None or version != self._last
        self._last = version
        return moved

    def forget(self) -> None:
        """Make the next `moved()` true (the store could not be asked: ask again next time)."""
        self._last = None

    def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass(frozen=True, slots=True)
class _PollRows:
    """A poll's consequences as the rows of each table, converted before the write reaches the connection's thread."""

    memory: tuple[str, str, int] | None
    events: Sequence[tuple[str, str, str, int, str]]
    state: Sequence[tuple[str, str, str | None]]
    outbox: Sequence[tuple[str, str, str, int, str, str | None]]
    decisions: Sequence[tuple[str, int, str]]


@dataclass(frozen=True, slots=True)
class _Write:
    """A write waiting for the connection's thread, and its caller's future."""

    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


def _in_savepoint(db: sqlite3.Connection, write: _Write) -> tuple[_Write, object, BaseException | None]:
    """Run one write of a group; if it fails, undo it alone and keep its exception for its caller."""
    db.execute("SAVEPOINT write")
    try:
        result = write.work(db)
    except Exception as exc:
        if not db.in_transaction:  # SQLite rolled the whole transaction back itself (a full disk does): the batch
            raise  # is lost, and every caller of it must hear this error, not a missing savepoint
        db.execute("ROLLBACK TO write")
        db.execute("RELEASE write")
        return write, None, exc
    db.execute("RELEASE write")
    return write, result, None


def _settle(outcomes: list[tuple[_Write, object, BaseException | None]]) -> None:
    """On the event loop: hand each caller its result or exception (unless it stopped waiting)."""
    for write, result, exc in outcomes:
        if write.future.done():
            continue
        if exc is None:
            write.future.set_result(result)
        else:
            write.future.set_exception(exc)


def _requeue(notification_id: str, now_ms: int, db: sqlite3.Connection) -> bool:
    cursor = db.execute(
        "UPDATE outbox SET status = 'pending', next_attempt_ms = ?, done_ms = NULL WHERE id = ?",
        (now_ms, notification_id),
    )
    return cursor.rowcount == 1


def _statements(script: str) -> list[str]:
    """The statements of a migration script (our scripts hold no ';' inside literals)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


def _database_files(path: str) -> tuple[str, str]:
    """The files a commit writes to: the database and its `-wal` file."""
    return (path, f"{path}-wal")


def _file_stamp(files: Sequence[str]) -> tuple[int, ...] | None:
    """Size, time of change and inode of the database file and its `-wal` file (None if the database file is
    away)."""
    stamp: list[int] = []
    for index, name in enumerate(files):
        try:
            found = os.stat(name)
        except OSError:
            if index == 0:
                return None
            stamp += (-1, -1, -1)  # no `-wal` file (yet, or no longer)
            continue
        stamp += (found.st_size, found.st_mtime_ns, found.st_ino)
    return tuple(stamp)
