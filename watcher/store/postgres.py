"""The PostgreSQL store: the same `Store` as SQLite, on a server several replicas share.

Connections come from a psycopg pool; each call borrows one and runs whole — a poll's consequences are one
transaction. Migrations run at open in one transaction under `pg_advisory_xact_lock`, so replicas starting together
migrate once. The URL's password never appears in a repr, a log line or an error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg_pool import AsyncConnectionPool

from watcher.core.decisions import Decision, decisions_from_body
from watcher.core.events import Event, event_from_json, event_to_json
from watcher.core.memory import JobMemory
from watcher.core.notification import Notification
from watcher.core.records import (
    DeliveryAttempt,
    DeliveryOutcome,
    LoggedDelivery,
    OutboxItem,
    OutboxLook,
    OutboxStatus,
    StateRow,
)
from watcher.store.errors import LeaseLostError, StoreError, StoreWriteError
from watcher.store.groupcommit import GroupCommit
from watcher.store.location import redact_url, url_problem
from watcher.store.pgleases import NOW, RULE_TIMERS, fence, release_all, renew_outbox_claims
from watcher.store.pgleases import claim as claim_lease
from watcher.store.pgleases import hold as hold_leases
from watcher.store.pgleases import taken as taken_leases
from watcher.store.pgschema import (
    LEASE_LOST_SQLSTATE,
    MIGRATION_LOCK_KEY,
    MIGRATIONS,
    OUTBOX_CHANNEL,
    ROWS_CHANNEL,
    RULES_LOCK_KEY,
    SCHEMA_VERSION,
    statements,
)
from watcher.store.pgtx import one_transaction
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

log = logging.getLogger("benchwatch.store")
RV = TypeVar("RV")


@dataclass
class _Open:
    """A transaction commits join (the rule-state section's): its connection, in a pipeline, and the notifications
    its commits claimed (`commit`: each with its INSERT's cursor — a row if the INSERT added it), handed over at
    COMMIT."""

    conn: psycopg.AsyncConnection[Any]
    claimed: list[tuple[psycopg.AsyncCursor[Any], Notification]] = field(default_factory=list)


# The rule-state section this task is in (`rules_section`), which `commit` joins.
_SECTION: ContextVar[_Open | None] = ContextVar("benchwatch_rules_section", default=None)

CONNECT_TIMEOUT_S: Final = 5.0
DEFAULT_LEASE_TTL_MS: Final = 15_000
LISTEN_RETRY_S: Final = 1.0
LISTEN_LOOK_S: Final = 60.0  # how often the idle LISTEN connection's wait wakes without a NOTIFY (see `_Listening`)
# The server answered but cannot write (docs/ha.md): a full disk (ENOSPC), a failing disk (EIO), a read-only
# database (a hot standby, `default_transaction_read_only`). Store health holds polls and sends until a probe write
# succeeds. Other resource errors (out of memory, too many connections, a configured limit) stay `StoreError`.
CANNOT_WRITE: Final = (psycopg.errors.DiskFull, psycopg.errors.IoError, psycopg.errors.ReadOnlySqlTransaction)
INTERRUPTED_REASON: Final = "claim_expired"  # the reason of an `interrupted` attempt
# SQL over `due` (the row as it was) in due_notifications: another replica's claim, expired, is being taken over.
_TAKEN_OVER: Final = "(was_claimed_by IS NOT NULL AND was_claimed_by <> %(me)s)"
_INTERRUPTED_TEXT: Final = "'claim of replica ' || was_claimed_by || ' expired; its send may have arrived'"


def default_holder() -> str:
    """A replica's name: host, process, and a random tail (a restarted process is a new replica)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class PostgresStore:
    """`Store` on a PostgreSQL database, migrated on open.

    `step_hook`, when given, is called with the name of each step of a commit (as `SQLiteStore` does), so tests
    can interrupt a commit at every point.
    """

    def __init__(
        self,
        url: str,
        *,
        step_hook: Callable[[str], None] | None = None,
        pool_size: int = 4,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        holder: str | None = None,
        lease_ttl_ms: int = DEFAULT_LEASE_TTL_MS,
        caller_clock: bool = False,
    ) -> None:
        self._url = url
        self.path = redact_url(url)  # what messages name the store by
        if (problem := url_problem(url)) is not None:  # libpq's own message would quote the password
            raise StoreError(f"{self.path}: cannot use as a benchwatch database: {problem}")
        self.holder = holder or default_holder()
        self.shared = True
        self.lease_ttl_ms = lease_ttl_ms
        # Leases and claims are timed by the database's clock, one for every replica (see pgleases); a test that
        # moves a manual clock times them by the `now_ms` it passes instead.
        self.caller_clock = caller_clock
        self.reachable = True  # false from a failed round trip to the next good one: /readyz answers 503
        self._step_hook = step_hook
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._pool: AsyncConnectionPool | None = None
        # Fencing: once this replica holds leases, a job's memory is committed only under the epoch it holds.
        self._epochs: dict[str, int] | None = None
        self._sender = ""  # this replica while its worker listens (it sends what it commits: no NOTIFY), else ""
        # While its worker listens (`listen`'s `taker`): this replica's commits claim their notifications for it, while
        # it has room, and hand them over at COMMIT (`_hand_over`), sent without a claim's transaction.
        self._taker: Taker | None = None
        self.notifies_let_pass = 0  # NOTIFYs naming a replica whose own worker sends (an earlier version's)
        # `write_mark`: announced commits heard per namespace, by the listener's connection (counted), while it listens
        self._announced: collections.Counter[str] = collections.Counter()
        self._rows_connection = 0
        self._rows_listening = False
        self._rules_turn = asyncio.Lock()
        self._lease_conn: psycopg.AsyncConnection[Any] | None = None  # the heartbeat's own (`_lease_connection`)
        self._lease_turn = asyncio.Lock()
        # Attempts recorded at the same moment share one transaction: a first pass over a backlog records hundreds
        # a second, and a transaction (four round trips, a WAL flush) each was most of what a send cost.
        self._attempts: GroupCommit[_AttemptRecord] = GroupCommit(self._record_attempts)

    def __repr__(self) -> str:
        return f"PostgresStore({self.path!r})"

    async def __aenter__(self) -> PostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Connect, then bring the schema up to date (one replica at a time)."""
        if self._pool is not None:
            return
        pool = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=self._pool_size,
            open=False,
            kwargs=self._connect_kwargs(),
            timeout=self._connect_timeout_s,
            name="benchwatch",
            configure=self._configure,
        )
        try:
            await self._probe()  # one direct connection first: a server that is not there is told at once
            await pool.open(wait=True, timeout=self._connect_timeout_s)
            self._pool = pool
            await self._migrate()
        except (psycopg.Error, TimeoutError) as exc:
            await self.close()
            await pool.close()
            raise StoreError(f"{self.path}: cannot use as a benchwatch database: {_one_line(exc)}") from None
        except BaseException:
            await self.close()
            await pool.close()
            raise

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Every pooled session: a replica paused inside a transaction (holding the lease or rule-state lock)
        loses it after one lease TTL, instead of holding the others up; no lock wait lasts forever; a vanished
        peer is noticed by TCP keepalives in seconds, not hours."""
        await conn.execute(
            "SELECT set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('lock_timeout', %s, false), set_config('tcp_keepalives_idle', '5', false),"
            " set_config('tcp_keepalives_interval', '2', false), set_config('tcp_keepalives_count', '3', false)",
            (str(self.lease_ttl_ms), str(2 * self.lease_ttl_ms)),
        )

    def _connect_kwargs(self) -> dict[str, Any]:
        """How every connection of the store is opened: in autocommit, within the connect timeout, and preparing no
        statement on the server (psycopg prepares one it has run five times), as `pgtx.one_transaction` requires: a
        write error at one statement (a full disk) left the statements queued after it unprepared on the server
        and prepared for psycopg, and their next runs failed after the disk had room again."""
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self._connect_timeout_s)),
            "prepare_threshold": None,
        }

    async def _probe(self) -> None:
        connection = await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs())
        await connection.close()

    async def close(self, *, release: bool = True) -> None:
        """Let go of leases and claims (others take over at once), close every connection; safe to call twice.
        `release=False` leaves them to run out by their TTL, as a crash (`kill -9`) would."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        await self._drop_lease_connection()
        if self._epochs is not None and release:
            with contextlib.suppress(psycopg.Error, TimeoutError):
                async with pool.connection(timeout=self._connect_timeout_s) as conn, conn.transaction():
                    await release_all(conn, self.holder)
                    await conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))  # its claims: the others' now
        await pool.close()

    def _pool_or_fail(self) -> AsyncConnectionPool:
        if self._pool is None:
            raise StoreError(f"{self.path}: store is not open")
        return self._pool

    async def _migrate(self) -> None:
        if await self._schema_version() == SCHEMA_VERSION:
            return  # current: no DDL, no lock — a role granted only its tables' rows can start (CREATE needs more)
        async with self._pool_or_fail().connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await (await conn.execute("SELECT version FROM schema_version")).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: database schema v{version} is newer than this benchwatch (v{SCHEMA_VERSION});"
                    " upgrade"
                )
            for number in range(version, SCHEMA_VERSION):
                for statement in statements(MIGRATIONS[number]):
                    await conn.execute(statement.encode())
            if version != SCHEMA_VERSION:
                await conn.execute("DELETE FROM schema_version")
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))

    async def _schema_version(self) -> int | None:
        """The schema's version when its table exists, read without any DDL; None when there is none yet."""
        async with self._pool_or_fail().connection() as conn:
            found = await (await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")).fetchone()
            if not found or not found[0]:
                return None
            row = await (await conn.execute("SELECT max(version) FROM schema_version")).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    @contextlib.asynccontextmanager
    async def _connection(self, *, leases: bool = False) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection (`leases`: the heartbeat's own, see `_lease_connection`); a lost server becomes
        `StoreError` (and `reachable` false until the next success), a server that cannot write (`CANNOT_WRITE`)
        `StoreWriteError`."""
        pool = self._pool_or_fail()
        async with self._translated(leases=leases):
            if not self.reachable:
                # The server was away: ask it directly (refused at once while it is down, where the pool would
                # wait its timeout), then let the pool drop the connections the restart broke.
                await self._probe()
                await pool.check()
            if leases:
                async with self._lease_turn:
                    yield await self._lease_connection()
            else:
                async with pool.connection(timeout=self._connect_timeout_s) as conn:
                    yield conn

    @contextlib.asynccontextmanager
    async def _translated(self, *, leases: bool = False) -> AsyncIterator[None]:
        """The database's errors as the store's (see `_connection`): for a connection's whole use, and for what
        another task of this process writes inside a rule-state section (`_join_section`)."""
        try:
            yield
        except psycopg.errors.IdleInTransactionSessionTimeout as exc:  # paused too long: the server let go
            raise StoreError(f"{self.path}: {_one_line(exc)}") from None
        except CANNOT_WRITE as exc:  # the server answered: reachable, but nothing of the write was recorded
            self.reachable = True
            why = exc.diag.message_primary or _one_line(exc)  # without the CONTEXT lines of where it was raised
            raise StoreWriteError(f"{self.path}: cannot write: {why} (SQLSTATE {exc.sqlstate})") from None
        except psycopg.errors.InsufficientPrivilege as exc:  # the role may not do this: a grant to fix, one line
            self.reachable = True
            why = exc.diag.message_primary or _one_line(exc)
            raise StoreError(f"{self.path}: {why} (SQLSTATE 42501): grant benchwatch's role its tables") from None
        except psycopg.OperationalError as exc:
            self.reachable = False
            if leases:
                await self._drop_lease_connection()
            raise StoreError(f"{self.path}: {_one_line(exc)}") from None
        except psycopg.DatabaseError as exc:
            if exc.sqlstate != LEASE_LOST_SQLSTATE:
                raise
            self.reachable = True  # the fence of a commit (`_fence`): nothing of it was written
            raise self._lease_lost(exc.diag.message_detail or "") from None
        self.reachable = True

    async def _lease_connection(self) -> psycopg.AsyncConnection[Any]:
        """The heartbeat's connection, beside the pool (opened at the first heartbeat, again after it broke): a
        replica whose polls, rule-state turns and sends hold every pooled connection still renews its leases on
        time. With the heartbeat queued behind them, three replicas on the first pass over 10,000 jobs let
        leases run out and took 26 jobs from each other in five seconds."""
        conn = self._lease_conn
        if conn is None or conn.closed or conn.broken:
            conn = await psycopg.AsyncConnection.connect(self._url, **self._connect_kwargs())
            await self._configure(conn)
            self._lease_conn = conn
        return conn

    async def _drop_lease_connection(self) -> None:
        conn, self._lease_conn = self._lease_conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()

    async def _select(self, query: str, params: Sequence[object] | Mapping[str, object] = ()) -> list[Any]:
        async with self._connection() as conn:
            cursor = await conn.execute(query.encode(), params)
            return await cursor.fetchall()

    def _step(self, name: str) -> None:
        if self._step_hook is not None:
            self._step_hook(name)

    # -- the Store interface ----------------------------------------------------------------------

    async def load_memory(self, job_id: str) -> JobMemory | None:
        """What the watcher knew of a job, or None."""
        rows = await self._select("SELECT memory FROM jobs WHERE job_id = %s", (job_id,))
        return JobMemory.model_validate_json(rows[0][0]) if rows else None

    async def load_memories(self) -> dict[str, JobMemory]:
        """Every job's memory, by job id."""
        rows = await self._select("SELECT job_id, memory FROM jobs ORDER BY job_id")
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
        """Record a poll's consequences in one transaction. Once this replica holds leases, a job's memory is
        written only under the lease's epoch (`LeaseLostError` otherwise, and nothing of the commit is written).

        Pipelined: the fence, the writes and the COMMIT go out together, one round trip, and an error in any of them
        (the fence's included) rolls the whole back. Inside a rule-state section (`rules_section`, this task), the
        writes join the section's own transaction and go out with its COMMIT when the section ends — with its lock
        let go there: a routed poll is two round trips (the lock with the reads, then the writes with the COMMIT), and
        a lease lost shows as `LeaseLostError` from the section's end."""
        write = functools.partial(
            self._write_poll,
            memory=memory,
            events=events,
            state_rows=state_rows,
            notifications=notifications,
            decisions=decisions,
            announce=announce,
        )
        section = _SECTION.get()
        if section is not None:
            self._step("begin")
            await write(section)
            self._step("before_commit")
            return
        async with self._connection() as conn:
            opened = _Open(conn)
            self._step("begin")
            async with one_transaction(conn):
                await write(opened)
                self._step("before_commit")
            self._step("after_commit")
            await self._hand_over(opened.claimed)

    async def _write_poll(
        self,
        opened: _Open,
        *,
        memory: JobMemory | None,
        events: Sequence[Event],
        state_rows: Sequence[StateRow],
        notifications: Sequence[Notification],
        decisions: Sequence[Decision],
        announce: bool,
    ) -> None:
        """Queue a commit's statements on the open transaction, in a pipeline: nothing is read back, so nothing
        waits here. While this replica's worker takes what it commits (`listen`'s `taker`) and has room, each
        notification is claimed for it as it is added, and handed over once the COMMIT is done (a row already
        there, the same notification from an earlier commit, is neither claimed nor handed over)."""
        conn = opened.conn
        if memory is not None:
            await self._fence(conn, memory.job_id)
            await self._write_memory(conn, memory)
        for index, event in enumerate(events):
            await conn.execute(
                "INSERT INTO events (id, job_id, kind, at_ms, body) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO NOTHING",
                (event.id, event.job_id, event.kind, event.at_ms, event_to_json(event)),
            )
            self._step(f"event:{index}")
        for index, row in enumerate(state_rows):
            await _write_state_row(conn, row)
            self._step(f"state:{index}")
        claiming = bool(notifications) and self._taker is not None and self._taker.has_room()
        for index, n in enumerate(notifications):
            if claiming:
                params = dict(zip(("id", "notifier", "rule", "created", "body", "job"), _outbox_row(n), strict=True))
                claim = {"me": self.holder, "now": self._lease_now(n.created_ms), "ttl": self.lease_ttl_ms}
                cursor = await conn.execute(_ADD_CLAIMED, {**params, **claim})
                opened.claimed.append((cursor, n))
            else:
                await conn.execute(_ADD, _outbox_row(n))
            self._step(f"notification:{index}")
        await self._record_decisions(conn, decisions)
        if announce:  # delivered at COMMIT: every listener's `write_mark` of these namespaces moves
            for namespace in sorted({row.namespace for row in state_rows}):
                await conn.execute("SELECT pg_notify(%s, %s)", (ROWS_CHANNEL, namespace))
        if notifications and not self._sender:  # delivered at COMMIT (see `listen`); a listening replica's own
            await conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))  # worker sends them: none

    async def _hand_over(self, claimed: Sequence[tuple[psycopg.AsyncCursor[Any], Notification]]) -> None:
        """Once the COMMIT is done: give this replica's worker the notifications the commit added and claimed."""
        taker = self._taker
        if not claimed or taker is None:
            return
        added = [n for cursor, n in claimed if await cursor.fetchone() is not None]
        if added:
            taker.take([OutboxItem(n, OutboxStatus.PENDING, 0, 0, None, None, None) for n in added])

    async def _fence(self, conn: psycopg.AsyncConnection[Any], job_id: str) -> None:
        if self._epochs is None:
            return  # not leasing (a one-off command, a test of the store alone)
        epoch = self._epochs.get(job_id)
        if epoch is None:
            raise self._lease_lost(job_id)
        await fence(conn, self.holder, job_id, epoch)  # fails the transaction where the lease is lost

    def _lease_lost(self, job_id: str) -> LeaseLostError:
        if self._epochs is not None:
            self._epochs.pop(job_id, None)
        return LeaseLostError(f"{job_id}: this replica no longer holds the job's lease; its poll is not recorded")

    async def _record_decisions(self, conn: psycopg.AsyncConnection[Any], decisions: Sequence[Decision]) -> None:
        rows = decision_rows(decisions)
        if rows:
            async with conn.cursor() as cursor:
                await cursor.executemany("INSERT INTO decisions (event_id, at_ms, body) VALUES (%s, %s, %s)", rows)
            self._step("decisions")

    async def _write_memory(self, conn: psycopg.AsyncConnection[Any], memory: JobMemory) -> None:
        await conn.execute(
            "INSERT INTO jobs (job_id, memory, updated_ms) VALUES (%s, %s, %s)"
            " ON CONFLICT (job_id) DO UPDATE SET memory = excluded.memory, updated_ms = excluded.updated_ms",
            (memory.job_id, memory.model_dump_json(), memory.last_seen_ms),
        )
        self._step("memory")

    async def get_state(self, namespace: str, key: str) -> str | None:
        """One state row's body, or None."""
        rows = await self._select("SELECT body FROM state_rows WHERE namespace = %s AND key = %s", (namespace, key))
        return str(rows[0][0]) if rows else None

    async def put_state(self, namespace: str, key: str, body: str) -> None:
        """Write one state row on its own (committed at once)."""
        await self.commit(state_rows=[StateRow(namespace, key, body)])

    def write_mark(self, namespace: str) -> tuple[int, int] | None:
        """Of a namespace whose commits are announced (`commit(announce=True)`: every process that writes it
        does): how many announcements this process's listener has heard, and since which connection of it — it
        may have missed some while it was away. None while it does not listen (a replica without a worker, a
        command, the listener reconnecting): only a round trip could tell then. An announcement reaches the
        listener just after its commit is visible: a reading in between sees the commit, and the mark moves once
        more after it (one more reading, never one less). Of a namespace not announced, the mark never moves: the
        caller asks only of announced ones."""
        if not self._rows_listening:
            return None
        return self._rows_connection, self._announced[namespace]

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace, by key."""
        rows = await self._select(
            'SELECT key, body FROM state_rows WHERE namespace = %s ORDER BY key COLLATE "C"', (namespace,)
        )
        return [StateRow(namespace, str(row[0]), str(row[1])) for row in rows]

    async def load_state_range(self, namespace: str, first_key: str, last_key: str) -> list[StateRow]:
        """The state rows of a namespace from `first_key` to `last_key` (both included, bytewise — as SQLite
        compares them, whatever the database's collation), by key."""
        rows = await self._select(
            'SELECT key, body FROM state_rows WHERE namespace = %s AND key COLLATE "C" BETWEEN %s AND %s'
            ' ORDER BY key COLLATE "C"',
            (namespace, first_key, last_key),
        )
        return [StateRow(namespace, str(row[0]), str(row[1])) for row in rows]

    async def outbox_items(
        self, *, status: str | None = None, limit: int = 1000, newest_first: bool = False
    ) -> list[OutboxItem]:
        """Outbox entries, oldest (or newest) first, optionally of one status (pending, sent, dead)."""
        where = " WHERE status = %s" if status is not None else ""
        params: list[object] = [*([status] if status is not None else []), limit]
        order = 'created_ms DESC, id COLLATE "C" DESC' if newest_first else 'created_ms, id COLLATE "C"'
        return await self._outbox_query(f"SELECT {OUTBOX_COLUMNS} FROM outbox{where} ORDER BY {order} LIMIT %s", params)

    async def outbox_item(self, notification_id: str) -> OutboxItem | None:
        """One outbox entry by notification id (a unique prefix of at least 6 characters also finds it)."""
        items = await self._outbox_query(
            f"SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = %s OR (length(%s) >= 6 AND starts_with(id, %s)) LIMIT 2",
            [notification_id, notification_id, notification_id],
        )
        return items[0] if len(items) == 1 else None

    async def due_notifications(
        self, now_ms: int, *, limit: int = 200, exclude: Collection[str] = ()
    ) -> list[OutboxItem]:
        """Pending notifications whose next attempt is due, the longest-waiting first, but for `exclude` — each
        claimed for this replica (`FOR UPDATE SKIP LOCKED`, a claim lease of `lease_ttl_ms`): another replica's
        live claim is skipped, an expired one (its replica died) taken over. Taking over another replica's
        expired claim records, in the same statement, an `interrupted` attempt naming that replica (its send may
        have arrived) and counts it in `attempts`, so the next real attempt has the next number."""
        items = await self._outbox_query(
            "WITH due AS (SELECT id, claimed_by AS was_claimed_by, claim_expires_ms AS was_expires_ms FROM outbox"
            " WHERE status = 'pending' AND next_attempt_ms <= %(due)s AND NOT (id = ANY(%(exclude)s))"
            f" AND (claimed_by IS NULL OR claimed_by = %(me)s OR claim_expires_ms <= {NOW})"
            ' ORDER BY next_attempt_ms, created_ms, id COLLATE "C" LIMIT %(limit)s FOR UPDATE SKIP LOCKED),'
            f" claimed AS (UPDATE outbox SET claimed_by = %(me)s, claim_expires_ms = {NOW} + %(ttl)s,"
            f" attempts = attempts + CASE WHEN {_TAKEN_OVER} THEN 1 ELSE 0 END,"
            f" last_reason = CASE WHEN {_TAKEN_OVER} THEN %(reason)s ELSE last_reason END,"
            f" last_error = CASE WHEN {_TAKEN_OVER} THEN {_INTERRUPTED_TEXT} ELSE last_error END"
            " FROM due WHERE outbox.id = due.id"
            f" RETURNING outbox.*, due.was_claimed_by, due.was_expires_ms),"
            " interrupted AS (INSERT INTO deliveries (notification_id, notifier, attempt, started_ms, finished_ms,"
            " outcome, reason, error) SELECT id, notifier, attempts, greatest(0, was_expires_ms - %(ttl)s), %(due)s,"
            f" %(outcome)s, %(reason)s, {_INTERRUPTED_TEXT} FROM claimed WHERE {_TAKEN_OVER})"
            f" SELECT {OUTBOX_COLUMNS} FROM claimed",
            {
                "me": self.holder,
                "due": now_ms,  # retries are scheduled by the worker's clock
                "now": self._lease_now(now_ms),
                "ttl": self.lease_ttl_ms,
                "exclude": list(exclude),
                "limit": limit,
                "outcome": DeliveryOutcome.INTERRUPTED.value,
                "reason": INTERRUPTED_REASON,
            },
        )
        return sorted(items, key=_due_order)

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        """When the next pending notification is due (later than `after_ms`), if any; one claimed by another
        replica counts from when its claim expires."""
        due = (
            "CASE WHEN claimed_by IS NULL OR claimed_by = %s THEN next_attempt_ms"
            " ELSE greatest(next_attempt_ms, claim_expires_ms) END"
        )
        rows = await self._select(
            f"SELECT min({due}) FROM outbox WHERE status = 'pending' AND {due} > %s",
            (self.holder, self.holder, after_ms),
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- Coordination: leases, claims, wake-ups ---------------------------------------------------

    async def hold(self, job_ids: Collection[str], now_ms: int, *, rested: Collection[str] = ()) -> Holding:
        """The heartbeat: mark `rested` jobs resting, renew this replica's leases (and its outbox claims), take its
        share of free or expired ones, let go of the rest; returns what it holds, what it has just taken over,
        which of `job_ids` another replica saw come to rest, and what it saw of the outbox for the worker."""
        reused = self._lease_conn is not None
        try:
            held, resting, timers, outbox = await self._hold_once(job_ids, now_ms, rested)
        except StoreError:
            if not reused or self._lease_conn is not None:  # not a connection that was cut while it waited
                raise
            # Its connection, idle since the last heartbeat, was cut (a server restart, a demotion, a proxy's idle
            # timeout): once more, on a new one, as the pool would have given.
            held, resting, timers, outbox = await self._hold_once(job_ids, now_ms, rested)
        before = self._epochs or {}
        self._epochs = held
        acquired = frozenset(job_id for job_id, epoch in held.items() if before.get(job_id) != epoch)
        return Holding(frozenset(held), acquired, resting, timers, outbox)

    async def _hold_once(
        self, job_ids: Collection[str], now_ms: int, rested: Collection[str]
    ) -> tuple[dict[str, int], frozenset[str], bool, OutboxLook]:
        # Two round trips: BEGIN, the outbox claims' renewal, the look at the outbox and the leases' steps
        # (`hold_leases`, whose counts decide the rest); then the rebalancing step if any, the rule-timer claim and
        # the COMMIT. (Taken on its own every second, the claim was a transaction a second of every replica; the
        # worker's own look, a claim and a read of the next due time every lease TTL, two.)
        async with self._connection(leases=True) as conn:
            async with one_transaction(conn) as pipeline:
                now = self._lease_now(now_ms)
                await renew_outbox_claims(conn, self.holder, now, self.lease_ttl_ms)
                look = await conn.execute(_LOOK, {"me": self.holder, "now": now})
                held, resting, taking = await hold_leases(
                    conn, pipeline, self.holder, job_ids, now_ms=now, ttl_ms=self.lease_ttl_ms, rested=rested
                )
                timers = await claim_lease(conn, RULE_TIMERS, self.holder, now, self.lease_ttl_ms)
            held |= await taken_leases(taking)
            seen = await look.fetchone()
            outbox = OutboxLook(
                None if seen is None or seen[0] is None else int(seen[0]),
                frozenset() if seen is None else frozenset(str(nid) for nid in seen[1]),
            )
            return held, resting, await timers.fetchone() is not None, outbox

    def _lease_now(self, now_ms: int) -> int | None:
        """The time a lease or claim is compared with: the caller's with `caller_clock`, else None — the
        database's clock (`pgleases.NOW`)."""
        return now_ms if self.caller_clock else None

    async def lease_holders(self) -> dict[str, str]:
        """Which replica holds each job, as last written."""
        rows = await self._select("SELECT job_id, holder FROM job_leases WHERE holder <> ''")
        return {str(row[0]): str(row[1]) for row in rows}

    @contextlib.contextmanager
    def _in_section(self, opened: _Open) -> Iterator[None]:
        """This task's commits join the rule-state section `opened` — its own."""
        token = _SECTION.set(opened)
        try:
            yield
        finally:
            _SECTION.reset(token)

    @contextlib.asynccontextmanager
    async def _join_section(self, opened: _Open) -> AsyncIterator[None]:
        """Another task of this process commits inside the rule-state section `opened` (a batch of turns), its
        errors said as the store's (a lease lost, the server away) as in the section's own task."""
        async with self._translated():
            with self._in_section(opened):
                yield

    @contextlib.asynccontextmanager
    async def rules_section(
        self, reads: SectionReads | Callable[[], SectionReads] | None = None
    ) -> AsyncIterator[SectionView]:
        """Rule state read, changed and committed by one replica at a time: a transaction advisory lock, held in
        a transaction of its own connection, which the commit inside joins (see `commit`). One section per process
        at a time, so waiting sections never take the whole pool. A holder that pauses past one lease TTL has its
        session ended by the server (`idle_in_transaction_session_timeout`), which frees the lock for the others.

        `reads` are read in the same transaction, once the lock is taken, pipelined with it: BEGIN, the lock and
        the reads are one round trip, so a turn costs one transaction whatever it reads. A callable `reads` is
        asked once this process's sections ahead of this one have ended."""
        async with self._rules_turn, self._connection() as conn:
            opened = _Open(conn)
            join = functools.partial(self._join_section, opened)
            async with one_transaction(conn) as pipeline:
                reads = reads() if callable(reads) else reads
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (RULES_LOCK_KEY,))
                if reads is None:
                    await pipeline.sync()  # the lock taken before the section begins
                    view = SectionView(join=join)
                else:
                    view = await self._section_reads(conn, reads, join)
                with self._in_section(opened):  # this task's commits inside the section join its transaction
                    yield view
            await self._hand_over(opened.claimed)

    async def _section_reads(
        self,
        conn: psycopg.AsyncConnection[Any],
        reads: SectionReads,
        join: Callable[[], contextlib.AbstractAsyncContextManager[None]],
    ) -> SectionView:
        """The section's reads, sent with its BEGIN and lock (one round trip)."""
        row = await conn.execute("SELECT body FROM state_rows WHERE namespace = %s AND key = %s", reads.row)
        after = None
        if reads.after is not None:
            after = await conn.execute(
                'SELECT key, body FROM state_rows WHERE namespace = %s AND key COLLATE "C" > %s'
                ' ORDER BY key COLLATE "C"',
                (reads.namespace, reads.after),
            )
        found = await row.fetchone()
        rows = await after.fetchall() if after is not None else []
        body = None if found is None else str(found[0])
        return SectionView(body, tuple(StateRow(reads.namespace, str(key), str(value)) for key, value in rows), join)

    async def outbox_claims(self) -> int:
        """How many pending notifications this replica has claimed (its sends in flight)."""
        rows = await self._select(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND claimed_by = %s", (self.holder,)
        )
        return int(rows[0][0])

    @property
    def hands_over_commits(self) -> bool:
        """Whether this replica's commits hand their notifications to its worker (`listen`'s `taker`): nobody
        needs waking for them (one it had no room for waits, unclaimed, for its next dispatch)."""
        return self._taker is not None

    async def listen(self, wake: Callable[[], None], taker: Taker | None = None) -> None:
        """Call `wake` whenever a process commits notifications that it will not send itself (a command, `benchwatch
        deliveries retry`, a replica stopping in order and letting go of its claims), until cancelled.

        A replica that listens has a worker: it wakes that worker at its own commits, in process, and sends no
        NOTIFY for them — waking every replica's worker at every commit cost each of them two transactions (a claim
        that found nothing, a look at the next due time), and made three replicas spend 2.2 times the transactions
        of one; a NOTIFY naming its sender, which every listener then let pass (an earlier version's, still counted
        in `notifies_let_pass`), woke every replica's listener at every commit of any of them: three wake-ups a
        commit with three replicas, for nothing.

        Given the worker (`taker`), its own commits go further: each claims the notifications it adds for it, while
        it has room (`Taker.has_room`: fewer sends under way than a dispatch reads), and hands them over at COMMIT —
        sent without the claim's transaction, which the worker's wake-up cost at every commit (three replicas, which
        commit in smaller batches, paid it more often than one). A replica that dies before sending them leaves them
        claimed: the others take them over once the claim expires (a lease TTL), as any send it had in flight,
        recording the takeover as `interrupted` — it may have sent them.

        A lost connection is retried every second; `wake` is called after each reconnect, for what was missed, and
        after each failed attempt: while no NOTIFY can come (the server refuses a connection: too many clients), the
        worker looks every second instead of idling with the others' notifications due."""
        self._sender = self.holder
        self._taker = taker
        try:
            while True:
                try:
                    conn = await _Listening.connect(self._url, **self._connect_kwargs())
                    async with conn:
                        await conn.execute(f"LISTEN {OUTBOX_CHANNEL}; LISTEN {ROWS_CHANNEL}".encode())
                        self._rows_connection += 1
                        self._rows_listening = True
                        wake()
                        async for notify in conn.notifies():
                            if notify.channel == ROWS_CHANNEL:
                                self._announced[notify.payload] += 1
                            elif notify.payload:
                                self.notifies_let_pass += 1  # a replica's own: its worker sends it
                            else:
                                wake()
                except psycopg.Error as exc:
                    log.debug("outbox listener: %s; reconnecting", _one_line(exc))
                    wake()
                finally:
                    self._rows_listening = False
                await asyncio.sleep(LISTEN_RETRY_S)
        finally:
            self._sender = ""
            self._taker = None

    async def record_delivery(self, attempt: DeliveryAttempt, *, status: OutboxStatus, next_attempt_ms: int) -> None:
        """Record one delivery attempt and the notification's new status atomically — only while this replica's
        claim on it holds (fencing, as for polls): a replica paused with a send in flight, whose claim another
        replica took over (recording that send as `interrupted`, naming this one) and maybe sent, records nothing.
        Its `retry` written over the other's `sent` would send the notification again. Attempts recorded at the
        same moment share one transaction (group commit); each caller returns once its own is durable."""
        await self._attempts.submit(_AttemptRecord(attempt, status, next_attempt_ms))

    async def _record_attempts(self, records: list[_AttemptRecord]) -> None:
        """Attempts and their notifications' new statuses, in one transaction and one statement for the whole
        batch (arrays unnested; the attempt log keeps the records' order), each only where the claim holds."""
        attempts = [record.attempt for record in records]
        params = {
            "me": self.holder,
            "ids": [attempt.notification_id for attempt in attempts],
            "notifiers": [attempt.notifier for attempt in attempts],
            "attempts": [attempt.attempt for attempt in attempts],
            "started": [attempt.started_ms for attempt in attempts],
            "finished": [attempt.finished_ms for attempt in attempts],
            "outcomes": [attempt.outcome.value for attempt in attempts],
            "reasons": [attempt.reason for attempt in attempts],
            "errors": [attempt.error for attempt in attempts],
            "http": [attempt.http_status for attempt in attempts],
            "statuses": [record.status.value for record in records],
            "next": [record.next_attempt_ms for record in records],
            "done": [
                record.attempt.finished_ms if record.status != OutboxStatus.PENDING else None for record in records
            ],
        }
        async with self._connection() as conn:
            # Pipelined: BEGIN, the statement and the COMMIT go out together, one round trip; what it returned is
            # read once they are done (read inside the transaction, it cost a round trip of its own before COMMIT).
            async with one_transaction(conn):
                cursor = await conn.execute(_RECORD_ATTEMPTS, params)
                self._step("delivery:attempt")
            recorded = {str(row[0]) for row in await cursor.fetchall()}
        for attempt in attempts:
            if attempt.notification_id not in recorded:
                log.warning(
                    "%s: this replica's claim was taken over while its send was in flight (recorded there as "
                    "interrupted); its outcome here (%s) is not recorded",
                    attempt.notification_id,
                    attempt.outcome.value,
                )

    async def requeue(self, notification_id: str, now_ms: int) -> bool:
        """Send a dead-lettered (or sent) notification again: back to pending, due now."""
        async with self._connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "UPDATE outbox SET status = 'pending', next_attempt_ms = %s, done_ms = NULL WHERE id = %s",
                (now_ms, notification_id),
            )
            await conn.execute("SELECT pg_notify(%s, '')", (OUTBOX_CHANNEL,))
            return cursor.rowcount == 1

    async def deliveries(self, notification_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of one notification, in order."""
        rows = await self._select(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id = %s ORDER BY seq",
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
        query, params = delivery_log_query(
            "%s", job_id=job_id, rule=rule, notifier=notifier, status=status, limit=limit
        )
        items = await self._outbox_query(query, params)
        if not items:
            return []
        rows = await self._select(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE notification_id = ANY(%s) ORDER BY seq",
            ([item.notification.id for item in items],),
        )
        return logged_deliveries(items, [read_delivery_attempt(row) for row in rows])

    async def outbox_counts(self) -> dict[str, int]:
        """How many notifications are pending, sent and dead."""
        rows = await self._select("SELECT status, count(*) FROM outbox GROUP BY status")
        return {str(row[0]): int(row[1]) for row in rows}

    async def _outbox_query(self, query: str, params: Sequence[object] | Mapping[str, object]) -> list[OutboxItem]:
        rows = await self._select(query, params)
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
            "%s", job_id=job_id, since_seq=since_seq, limit=limit, kind=kind, newest_first=newest_first
        )
        rows = await self._select(query, params)
        return [StoredEvent(int(row[0]), event_from_json(row[1])) for row in rows]

    async def event(self, event_id: str) -> StoredEvent | None:
        """One recorded event by id (a unique prefix of at least 6 characters also finds it)."""
        rows = await self._select("SELECT seq, body FROM events WHERE id = %s", (event_id,))
        if not rows and len(event_id) >= MIN_PREFIX_CHARS:
            rows = await self._select("SELECT seq, body FROM events WHERE starts_with(id, %s) LIMIT 2", (event_id,))
        return StoredEvent(int(rows[0][0]), event_from_json(rows[0][1])) if len(rows) == 1 else None

    async def decisions(self, event_id: str) -> list[Decision]:
        """What routing decided for one event, for each rule, in the order it was decided."""
        rows = await self._select("SELECT body FROM decisions WHERE event_id = %s ORDER BY seq", (event_id,))
        return [decision for row in rows for decision in decisions_from_body(event_id, row[0])]


async def _write_state_row(conn: psycopg.AsyncConnection[Any], row: StateRow) -> None:
    if row.body is None:
        await conn.execute("DELETE FROM state_rows WHERE namespace = %s AND key = %s", (row.namespace, row.key))
    else:
        await conn.execute(
            "INSERT INTO state_rows (namespace, key, body) VALUES (%s, %s, %s)"
            " ON CONFLICT (namespace, key) DO UPDATE SET body = excluded.body",
            (row.namespace, row.key, row.body),
        )


# The heartbeat's look at the outbox for this replica's worker (`OutboxLook`): when the first pending notification
# it may take falls due — nobody's, or claimed by a replica whose claim expired (due once it expired) — and the ids
# of those this replica has claimed. Other replicas' live claims are left out: their holders send them.
_LOOK: Final = (
    b"SELECT (SELECT min(CASE WHEN claimed_by IS NULL THEN next_attempt_ms"
    b" ELSE greatest(next_attempt_ms, claim_expires_ms) END) FROM outbox WHERE status = 'pending'"
    b" AND (claimed_by IS NULL OR (claimed_by <> %(me)s AND claim_expires_ms <= " + NOW.encode() + b"))),"
    b" (SELECT coalesce(array_agg(id), '{}') FROM outbox WHERE status = 'pending' AND claimed_by = %(me)s)"
)
# A notification added to the outbox (a row already there, from an earlier commit of the same one, left as it is).
_ADD: Final = (
    b"INSERT INTO outbox (id, notifier, rule, created_ms, body, job_id) VALUES (%s, %s, %s, %s, %s, %s)"
    b" ON CONFLICT (id) DO NOTHING"
)
# The same, claimed for this replica for a TTL from `now` (`pgleases.NOW`: None, the database's clock); returns its
# id only if it was added.
_ADD_CLAIMED: Final = (
    b"INSERT INTO outbox (id, notifier, rule, created_ms, body, job_id, claimed_by, claim_expires_ms)"
    b" VALUES (%(id)s, %(notifier)s, %(rule)s, %(created)s, %(body)s, %(job)s, %(me)s, " + NOW.encode() + b" + %(ttl)s)"
    b" ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _outbox_row(n: Notification) -> tuple[str, str, str, int, str, str | None]:
    return n.id, n.notifier, n.rule, n.created_ms, n.model_dump_json(), n.job_id


# A batch of attempts: each notification's new status where this replica's claim still holds, and the attempts
# of those, in the batch's order (WITH ORDINALITY); returns the ids recorded.
_RECORD_ATTEMPTS: Final = (
    b"WITH a AS (SELECT * FROM unnest(%(ids)s::text[], %(notifiers)s::text[], %(attempts)s::int[],"
    b" %(started)s::bigint[], %(finished)s::bigint[], %(outcomes)s::text[], %(reasons)s::text[], %(errors)s::text[],"
    b" %(http)s::int[], %(statuses)s::text[], %(next)s::bigint[], %(done)s::bigint[]) WITH ORDINALITY"
    b" AS a(id, notifier, attempt, started_ms, finished_ms, outcome, reason, error, http_status, status,"
    b" next_attempt_ms, done_ms, ord)),"
    b" updated AS (UPDATE outbox SET status = a.status, attempts = a.attempt, next_attempt_ms = a.next_attempt_ms,"
    b" last_reason = a.reason, last_error = a.error, done_ms = a.done_ms, claimed_by = NULL, claim_expires_ms = 0"
    b" FROM a WHERE outbox.id = a.id AND outbox.status = 'pending' AND outbox.claimed_by = %(me)s"
    b" RETURNING outbox.id)"
    b" INSERT INTO deliveries (notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason, error,"
    b" http_status) SELECT a.id, a.notifier, a.attempt, a.started_ms, a.finished_ms, a.outcome, a.reason, a.error,"
    b" a.http_status FROM a JOIN updated ON updated.id = a.id ORDER BY a.ord RETURNING notification_id"
)


@dataclass(frozen=True, slots=True)
class _AttemptRecord:
    """One attempt to record, with the status and next due time it leaves its notification in."""

    attempt: DeliveryAttempt
    status: OutboxStatus
    next_attempt_ms: int


def _due_order(item: OutboxItem) -> tuple[int, int, str]:
    return item.next_attempt_ms, item.notification.created_ms, item.notification.id


def _one_line(exc: BaseException) -> str:
    """A driver error as one line (libpq's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


class _Listening(psycopg.AsyncConnection[Any]):
    """The LISTEN connection. psycopg wakes a wait every 0.1 s (its `_WAIT_INTERVAL`, to let a blocking program see
    Ctrl-C); waiting for a NOTIFY that comes a few times a minute, that was ten wake-ups a second of every replica
    for nothing — a task's cancellation, a NOTIFY and a connection the server closed all wake the wait anyway."""

    async def wait(
        self,
        gen: PQGen[RV],
        interval: float = LISTEN_LOOK_S,
        timeout: float | None = None,  # noqa: ASYNC109 -- psycopg's signature, overridden for its default interval
    ) -> RV:
        return await super().wait(gen, interval=interval, timeout=timeout)
