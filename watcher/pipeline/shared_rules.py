"""The rule state the tracker routes with: cached from the store, and — with replicas — shared among them.

One process: the state is read from the store once and changed only by this process's own commits. Replicas
(PostgreSQL): it is read, changed and committed by one replica at a time, under the store's rule-state lock; inside,
the cached copy is brought up to the store's version with the rows the others logged since (read in the round trip
that takes the lock), or read whole when it is too far behind. A commit that changes the state moves the version on
and logs what it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from typing import Final

from rules.engine import RuleState, RuleStateChanges
from rules.persist import (
    LOG,
    LOG_KEPT,
    VERSION,
    VERSION_KEY,
    apply_row,
    load_rule_state,
    log_key,
    log_row,
    logged_rows,
    rows_for,
)
from watcher.core.records import StateRow
from watcher.store.errors import BatchRolledBackError, LeaseLostError, StoreError
from watcher.store.protocol import SectionReads, Store

log = logging.getLogger("benchwatch.rules")


class _Poll:
    """A poll under way (`SharedRuleState.polling`): counted as coming to a section until it comes to its turn
    or ends."""

    __slots__ = ("coming",)

    def __init__(self) -> None:
        self.coming = True


# The poll this task runs, if any.
_POLL: ContextVar[_Poll | None] = ContextVar("benchwatch_poll", default=None)
_NOTHING_UNDER_WAY: Final = contextlib.nullcontext()  # `polling` with one process (reusable, stateless)


class SharedRuleState:
    """The rule state as the store holds it, cached; `shared`: other replicas change it too."""

    def __init__(self, store: Store, *, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self._state: RuleState | None = None
        self._version: int | None = None  # replicas: the version of the rule state in `_state`
        self._section_version: int | None = None  # replicas, inside the rule-state lock: the version in the store
        self._why_whole: str | None = None  # why the cached state was dropped (the debug log)
        self._batch: _Batch | None = None  # replicas: the turns sharing the section this process holds or awaits
        # In a section, after a commit: the rows its turns changed and the version before them, until it commits.
        self._unconfirmed: tuple[list[tuple[str, str]], int] | None = None
        self._stale: set[tuple[str, str]] = set()  # rows a failed commit changed in `_state` alone: read again
        # Replicas: polls under way that have not come to a turn yet (`polling`), and a wake-up at each that does.
        self._coming = 0
        self._arrival = asyncio.Event()

    @property
    def cached(self) -> RuleState | None:
        """The rule state as last read or committed here (None before the first read, or after a failed commit)."""
        return self._state

    def polling(self) -> contextlib.AbstractContextManager[None]:
        """Around one poll (replicas): until it comes to its turn, or ends without one, a section about to begin
        waits for it, `GATHER_S` at most, so that it joins (see GATHER_S). One process: nothing to wait for — a
        shared no-op, so an unchanged poll builds no generator for it."""
        return self._under_way() if self.shared else _NOTHING_UNDER_WAY

    @contextlib.contextmanager
    def _under_way(self) -> Iterator[None]:
        poll = _Poll()
        self._coming += 1
        token = _POLL.set(poll)
        try:
            yield
        finally:
            _POLL.reset(token)
            self._arrived(poll)

    def _arrived(self, poll: _Poll) -> None:
        if poll.coming:
            poll.coming = False
            self._coming -= 1
            self._arrival.set()

    async def _gather(self) -> None:
        """Before a section begins: wait until no poll is under way that may still come to a turn, `GATHER_S` at
        most — turns that come meanwhile join the section."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GATHER_S
        while self._coming > 0:
            self._arrival.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrival.wait(), remaining)

    @contextlib.asynccontextmanager
    async def turn(self, *, exclusive: bool) -> AsyncIterator[RuleState]:
        """`async with`: the current rule state. Replicas, `exclusive`: under the rule-state lock, brought up to
        date inside it — two replicas routing into one group window never write it without each other's events.

        The exclusive turns of this process queued together share a section (`_Batch`): one lock and one
        transaction for up to `BATCH_TURNS` of them, each routed in its own task in the order it queued, all
        committed when the last has routed; a turn returns once that commit is done. If one of them fails (its lease
        lost, an error), the section is rolled back: the others raise `BatchRolledBackError`, and their polls are
        recorded at the next cycle, as after any commit that failed."""
        if not (exclusive and self.shared):
            yield await self._current()
            return
        poll = _POLL.get()
        if poll is not None:  # this poll has come
            self._arrived(poll)
        batch = self._batch
        if batch is not None and batch.admits():
            batch.admitted += 1
            async with self._joined(batch) as state:
                yield state
            return
        batch = self._batch = _Batch()
        async with self._section(self._reads, batch) as state:
            yield state

    def _reads(self) -> SectionReads:
        """What a turn reads as it begins: the version, and the log from the version this process's copy is at.
        Decided once the turn holds the section (the store calls it then): a turn that decided as it queued read
        back the entries of every turn of this process ahead of it as well — with a slot's polls queued together, a
        dozen entries a turn where the others' few were wanted, and nothing at all with one replica."""
        known = self._version if self._state is not None else None
        return SectionReads((VERSION, VERSION_KEY), LOG, None if known is None else log_key(known))

    @contextlib.asynccontextmanager
    async def _section(self, reads: Callable[[], SectionReads], batch: _Batch) -> AsyncIterator[RuleState]:
        """The first turn of `batch`: takes the section, routes, waits for the turns that joined it to route, and
        ends it — committing them all, or none."""
        await batch.body.acquire()  # a new lock: taken at once; the turns that join wait for this one's routing
        try:
            await self._gather()
            async with self.store.rules_section(reads) as view:  # the version and the log since, with the lock
                version = int(view.body or "0")
                self._catch_up(version, view.rows)
                self._version = self._section_version = version
                batch.join = view.join
                try:
                    try:
                        async with view.join():  # its errors said as the turns' that join (the store's own)
                            yield await self._current()
                    except BaseException as exc:
                        batch.fail(exc)
                        raise
                    finally:
                        batch.body.release()
                    await batch.drained()  # and admits no more
                    if batch.failed is not None:  # a turn that joined failed: none of the section is committed
                        raise _told(batch.failed)
                finally:
                    self._section_version = None
        except BaseException as exc:
            # A commit inside the section is durable only when the section ends (PostgreSQL: it joins the section's
            # transaction): if that failed, what it recorded is read again, from the version before it.
            if self._unconfirmed is not None:
                rows, before = self._unconfirmed
                self._stale.update(rows)
                self._version = before
            batch.end(batch.failed or exc)
            raise
        else:
            batch.end(None)
        finally:
            if batch.join is None:  # the section never began: the joined turns go, and find it failed
                batch.body.release()
            if self._batch is batch:  # no turn joins it any more
                self._batch = None
            self._unconfirmed = None

    @contextlib.asynccontextmanager
    async def _joined(self, batch: _Batch) -> AsyncIterator[RuleState]:
        """A turn that joined `batch`: it routes once the turns ahead of it have, inside their section, and returns
        once the section has ended."""
        routed = False
        try:
            async with batch.body:
                if batch.failed is None and batch.join is not None:  # else the section failed ahead of this turn
                    try:
                        async with batch.join():
                            yield await self._current()
                    except BaseException as exc:
                        batch.fail(exc)
                        raise
                    routed = True
        finally:
            batch.finished += 1
            batch.idle.set()
        ended = await batch.ended
        if ended is not None or not routed:
            raise _told(ended)

    @contextlib.asynccontextmanager
    async def recording(self, changes: RuleStateChanges | None) -> AsyncIterator[list[StateRow]]:
        """`async with ... as rows`: the rows recording `changes`, for the caller to commit inside the block — with
        the version moved on and its log entry when a replica commits changes in its turn. If the block fails, the
        rows it would have written are read again from the store (the truth) before the state is next used."""
        changed = rows_for(changes) if changes is not None else []
        rows = changed
        version = self._section_version
        if version is not None and rows:  # inside the rule-state lock: nobody else moves the version meanwhile
            version += 1
            log = [log_row(version, rows), StateRow(LOG, log_key(version - LOG_KEPT), None)]
            rows = [*rows, StateRow(VERSION, VERSION_KEY, str(version)), *log]
        try:
            yield rows
        except BaseException:
            # The cache holds these rows' new values, the store (as far as this replica knows) the old ones: they
            # are read again before the state is next used. Nothing else differs, so the rest of the cache, and the
            # version it is at, stand — a failed commit (a lease lost to a late heartbeat, the database away) costs
            # a few reads, not the whole rule state (tens of thousands of rows with many jobs) at every poll.
            self._stale.update((row.namespace, row.key) for row in changed)
            raise
        if version is not None:
            if rows:  # the turns of a batch: the rows of them all, and the version before the first
                keys = [(row.namespace, row.key) for row in changed]
                if self._unconfirmed is None:
                    self._unconfirmed = (keys, version - 1)
                else:
                    self._unconfirmed[0].extend(keys)
            self._version = self._section_version = version

    async def _current(self) -> RuleState:
        if self._state is None:
            log.debug("rule state: read whole (%s)", self._why_whole or "first read")
            self._why_whole = None
            self._stale.clear()
            # Replicas, outside a turn: the version is read first, so the copy is at least as new as it says — the
            # next turn applies the log from there (entries applied twice leave the same rows). Without it, the
            # first turn after a read outside one read it all again: each of three replicas that had come to rest
            # spent half a second of its first busy window doing so on 'many'.
            outside = self.shared and self._section_version is None
            version = int(await self.store.get_state(VERSION, VERSION_KEY) or "0") if outside else None
            self._state = await load_rule_state(self.store)
            if outside:
                self._version = version
        elif self._stale:
            for namespace, key in sorted(self._stale):
                apply_row(self._state, StateRow(namespace, key, await self.store.get_state(namespace, key)))
                self._stale.discard((namespace, key))
        return self._state

    def _catch_up(self, version: int, logged: Sequence[StateRow]) -> None:
        """Bring the cache to the store's `version` (inside the rule-state lock) with the log entries the section
        read (`logged`: those after the cached version): the rows the other replicas changed meanwhile; or, too far
        behind or with nothing cached, drop it — `_current` reads the whole state."""
        known, state = self._version, self._state
        if state is None or known is None or version == known:
            if known != version:
                self._drop(f"no version known of the copy, the store at {version}" if state else "")
            return
        if 0 < version - known <= LOG_KEPT:
            # The reads were asked for before this task's turn came: the others' turns in this process may have moved
            # the cached version on meanwhile, so the entries may begin earlier than it.
            since, until = log_key(known), log_key(version)
            entries = [entry for entry in logged if since < entry.key <= until]
            if [entry.key for entry in entries] == [log_key(v) for v in range(known + 1, version + 1)]:
                for entry in entries:
                    for row in logged_rows(entry.body or "[]"):
                        apply_row(state, row)
                return
        self._drop(f"the copy at version {known}, the store at {version}, {len(logged)} log entries read")

    def _drop(self, why: str) -> None:
        """Forget the cached state: `_current` reads it whole (`why`, for the debug log)."""
        self._state = None
        self._why_whole = why


BATCH_TURNS: Final = 16
"""At most this many exclusive turns of one process share a section. A slot's polls (`cycle.SLOT_JOBS`) route in
one: three replicas hand the lock over once a slot, not once a routed poll — each handover a wait on another
process's round trips and on the scheduler (0.77 replicas waited on the lock on average through `many`'s busy
windows)."""


GATHER_S: Final = 0.05
"""How long a section about to begin waits, at most, for the polls of this process under way that have not come to
a turn yet (`SharedRuleState.polling`): a slot's polls end over tens of milliseconds, and the turns of those that
ended after its section began each began one of their own — with three replicas, whose processes share the CPU, a
third of the sections held a single turn, against a fifth with one replica (issue 28)."""


class _Batch:
    """Turns of one process sharing a section: the first takes it and, once it has routed, waits for those that
    joined meanwhile to route, one after another (`body`), each in its own task; then ends it — all committed or
    none (`ended`: None, or why not)."""

    def __init__(self) -> None:
        self.body = asyncio.Lock()
        self.ended: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.idle = asyncio.Event()  # a joined turn has finished (`drained`)
        self.admitted = 1  # the first turn and those that joined
        self.finished = 1
        self.join: Callable[[], AbstractAsyncContextManager[None]] | None = None  # once the section has begun
        self.failed: BaseException | None = None  # the first failure of a turn: the section is rolled back
        self.closed = False  # set by `drained`

    def admits(self) -> bool:
        """Whether a turn may join: until the first turn has seen every joined one route (`drained`), unless one
        failed or the batch is full."""
        return not self.closed and self.failed is None and self.admitted < BATCH_TURNS

    def fail(self, exc: BaseException) -> None:
        if self.failed is None:
            self.failed = exc

    async def drained(self) -> None:
        """Wait until every turn that joined has finished routing (or given up), then admit no more. Not cut short
        by a cancellation: a joined turn may be writing on the section's connection (the cancellation is raised
        once it is done, and the section rolled back)."""
        cancelled: asyncio.CancelledError | None = None
        while self.finished < self.admitted:
            self.idle.clear()
            try:
                await self.idle.wait()
            except asyncio.CancelledError as exc:
                cancelled = exc
                self.fail(exc)
        self.closed = True
        if cancelled is not None:
            raise cancelled

    def end(self, failure: BaseException | None) -> None:
        if not self.ended.done():
            self.ended.set_result(failure)


def _told(cause: BaseException | None) -> StoreError:
    """What a turn raises whose section another turn's failure (`cause`) rolled back: the store's own error where
    it concerns every turn (the database away, refusing writes), for the cycle to handle as it does; else the
    rollback, and why."""
    if isinstance(cause, StoreError) and not isinstance(cause, (LeaseLostError, BatchRolledBackError)):
        return type(cause)(*cause.args)
    why = "" if cause is None else f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return BatchRolledBackError(
        f"not recorded: the rule-state section it shared was rolled back ({why}); polled again next cycle"
    )
