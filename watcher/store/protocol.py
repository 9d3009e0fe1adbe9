"""The store interface: what the watcher needs from its database, whatever the database is."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Collection, Hashable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from watcher.core.decisions import Decision
from watcher.core.events import Event
from watcher.core.memory import JobMemory
from watcher.core.notification import Notification
from watcher.core.records import DeliveryAttempt, LoggedDelivery, OutboxItem, OutboxLook, OutboxStatus, StateRow


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as recorded: its position in the store's log, and the event."""

    seq: int
    event: Event


@dataclass(frozen=True, slots=True)
class Holding:
    """The jobs a replica may poll now, and which of them it has just taken over (their memories in its cache
    may be stale: reload them from the store)."""

    held: frozenset[str]
    acquired: frozenset[str]
    resting: frozenset[str] = frozenset()
    """Of the jobs asked for, those another replica saw come to rest: nobody polls them any more."""
    timers: bool = False
    """Whether this replica holds the rule-timer claim (taken or renewed by this heartbeat, for a lease TTL):
    the one replica that flushes the rule timers and sends the digests."""
    outbox: OutboxLook | None = None
    """What the heartbeat saw of the outbox (None: a store with one process, whose worker looks itself)."""


@dataclass(frozen=True, slots=True)
class SectionReads:
    """What a rule-state section reads as it begins: one state row, and the rows of `namespace` keyed after
    `after` (in bytewise order; none when `after` is None)."""

    row: tuple[str, str]
    namespace: str
    after: str | None


@contextlib.asynccontextmanager
async def _no_join() -> AsyncIterator[None]:
    yield


@dataclass(frozen=True, slots=True)
class SectionView:
    """What a section read as it began: the row's body (None if absent) and the rows after the key, by key; and
    `join`, for another task of this process to commit inside the section, in its transaction, while the section's
    own task waits for it (`async with view.join(): ...`; a batch of turns, `SharedRuleState`)."""

    body: str | None = None
    rows: tuple[StateRow, ...] = ()
    join: Callable[[], AbstractAsyncContextManager[None]] = field(default=_no_join, compare=False, repr=False)


class Taker(Protocol):
    """A delivery worker as `Coordination.listen` hands it what this process commits."""

    def has_room(self) -> bool:
        """Whether notifications committed now should be claimed for it and handed over (else they are left
        unclaimed in the outbox, for its next look)."""
        ...

    def take(self, items: Sequence[OutboxItem]) -> None:
        """Notifications committed and claimed for it, handed over once committed."""
        ...


class Coordination(Protocol):
    """How replicas share the work: leases on jobs, the rule-timer claim. One SQLite process holds everything."""

    holder: str
    """This replica's name in leases, claims and `/api/jobs`."""
    shared: bool
    """Whether other replicas may share this store (PostgreSQL) — else this process holds everything."""
    reachable: bool
    """False from a failed round trip to the database until the next good one."""

    async def hold(self, job_ids: Collection[str], now_ms: int, *, rested: Collection[str] = ()) -> Holding:
        """The heartbeat of a replica: mark the jobs `rested` (this replica saw them come to rest) as resting for
        every replica, renew this replica's leases, take its share of free or expired ones (`job_ids` and
        orphans), let go of leases on jobs no longer in `job_ids`; take or renew the rule-timer claim if it is
        free, expired or already this replica's."""
        ...

    async def lease_holders(self) -> dict[str, str]:
        """Which replica holds each leased job, as last written."""
        ...

    async def outbox_claims(self) -> int:
        """How many pending notifications this replica has claimed (its sends in flight)."""
        ...

    @property
    def hands_over_commits(self) -> bool:
        """Whether this process's commits hand the notifications they add to the worker (`listen`'s `taker`)
        instead of leaving them for it to read: no wake-up is needed for them."""
        ...

    async def listen(self, wake: Callable[[], None], taker: Taker | None = None) -> None:
        """Call `wake` whenever another replica or process commits notifications or sends one again (`benchwatch
        deliveries retry`), until cancelled (returns at once if nobody else can write the store). A store that
        can, while it listens, claims the notifications this process commits for its worker (`taker`, while it has
        room) and hands them over once committed (PostgreSQL; SQLite, one process, leaves them to be read)."""
        ...


class Store(Protocol):
    """Durable job memories and events. SQLite implements it; a PostgreSQL twin can too.

    `commit` is the one write of a poll: the job's new memory and the events it revealed land in one
    transaction, or not at all. Recording an event id twice keeps the first.
    """

    async def open(self) -> None:
        """Open (creating and migrating when needed)."""
        ...

    async def close(self) -> None:
        """Close; safe to call twice."""
        ...

    async def load_memory(self, job_id: str) -> JobMemory | None:
        """What the watcher knew of a job, or None for a job it never saw."""
        ...

    async def load_memories(self) -> dict[str, JobMemory]:
        """Every job's memory, by job id (a restart resumes from these)."""
        ...

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
        """Record a poll's consequences atomically — memory, events, state rows, outbox, and what routing decided
        for each event and rule. An event already recorded (the same id) is left as it is. `announce`: the state
        rows are ones every process reads often and that change rarely (runtime silences): their namespaces'
        `write_mark` moves in every process as the commit lands."""
        ...

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace."""
        ...

    def write_mark(self, namespace: str) -> Hashable | None:
        """A mark of the state rows of `namespace`, at once and on the caller's thread: two equal marks, taken at
        two moments, mean none of them was committed between (by any process); None when the store cannot tell
        so cheaply — then whatever the mark would spare must be read. SQLite: a stamp of its files (any commit
        moves it). PostgreSQL: of a namespace whose commits are announced (`commit(announce=True)`), what its
        listener heard (`listen`); None while it does not listen."""
        ...

    async def load_state_range(self, namespace: str, first_key: str, last_key: str) -> list[StateRow]:
        """The state rows of a namespace whose keys lie from `first_key` to `last_key` (both included, compared
        byte by byte as text), by key — one query."""
        ...

    async def get_state(self, namespace: str, key: str) -> str | None:
        """One state row's body, or None."""
        ...

    async def put_state(self, namespace: str, key: str, body: str) -> None:
        """Write one state row on its own (committed at once)."""
        ...

    async def outbox_items(
        self, *, status: str | None = None, limit: int = 1000, newest_first: bool = False
    ) -> list[OutboxItem]:
        """Outbox entries, oldest (or newest) first, optionally of one status."""
        ...

    async def outbox_item(self, notification_id: str) -> OutboxItem | None:
        """One outbox entry by id (or unique prefix)."""
        ...

    async def due_notifications(
        self, now_ms: int, *, limit: int = 200, exclude: Collection[str] = ()
    ) -> list[OutboxItem]:
        """Pending notifications whose next attempt is due."""
        ...

    async def next_attempt_ms(self, *, after_ms: int = -1) -> int | None:
        """When the next pending notification is due (later than `after_ms`)."""
        ...

    async def record_delivery(self, attempt: DeliveryAttempt, *, status: OutboxStatus, next_attempt_ms: int) -> None:
        """Record an attempt and the notification's new status atomically."""
        ...

    async def requeue(self, notification_id: str, now_ms: int) -> bool:
        """Make a notification pending again, due now."""
        ...

    async def deliveries(self, notification_id: str) -> list[DeliveryAttempt]:
        """Every recorded attempt of one notification."""
        ...

    async def outbox_counts(self) -> dict[str, int]:
        """Notifications per status."""
        ...

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
        (pending, sent, dead; or `interrupted`: with an interrupted attempt)."""
        ...

    async def events(
        self,
        *,
        job_id: str | None = None,
        since_seq: int = 0,
        limit: int = 1000,
        kind: str | None = None,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Recorded events in the order they were recorded (or newest first), after `since_seq`, optionally of
        one job and one kind."""
        ...

    async def event(self, event_id: str) -> StoredEvent | None:
        """One recorded event by id (or unique prefix)."""
        ...

    async def decisions(self, event_id: str) -> list[Decision]:
        """What routing decided for one event, for each rule, in the order it was decided."""
        ...

    async def lease_holders(self) -> dict[str, str]:
        """Which replica holds each leased job (empty where there are no leases: SQLite)."""
        ...

    def rules_section(
        self, reads: SectionReads | Callable[[], SectionReads] | None = None
    ) -> AbstractAsyncContextManager[SectionView]:
        """`async with ... as view`: rule state is read, changed and committed by one replica at a time (no lock
        with one process). `reads`: the rows the section reads first, with the lock taken (in the same round trip
        on a server); a callable is asked for them once the section is this task's — what to read may depend on
        what the section before it changed."""
        ...


class NamespacedState:
    """A store's state rows under one namespace, as the small key → value state a notifier keeps."""

    def __init__(self, store: Store, namespace: str) -> None:
        self._store = store
        self._namespace = namespace

    async def get(self, key: str) -> str | None:
        """The stored value, or None."""
        return await self._store.get_state(self._namespace, key)

    async def put(self, key: str, value: str) -> None:
        """Store a value durably."""
        await self._store.put_state(self._namespace, key, value)

    async def rows(self) -> dict[str, str]:
        """Every key of the namespace and its value."""
        return {row.key: row.body for row in await self._store.load_state_rows(self._namespace) if row.body is not None}

    async def delete(self, key: str) -> None:
        """Delete one row (a no-op when there is none)."""
        await self._store.commit(state_rows=[StateRow(self._namespace, key, None)])
