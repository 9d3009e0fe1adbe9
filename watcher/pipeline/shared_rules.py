"""The rule state the tracker routes with: cached from the store, and — with replicas — shared among them.

One process: the state is read from the store once and changed only by this process's own commits. Replicas
(PostgreSQL): it is read, changed and committed by one replica at a time, under the store's rule-state lock; inside,
the cached copy is brought up to the store's version with the rows the others logged since (read in the round trip
that takes the lock), or read whole when it is too far behind. A commit that changes the state moves the version on
and logs what it changed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

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
from watcher.store.protocol import SectionReads, Store

log = logging.getLogger("benchwatch.rules")


class SharedRuleState:
    """The rule state as the store holds it, cached; `shared`: other replicas change it too."""

    def __init__(self, store: Store, *, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self._state: RuleState | None = None
        self._version: int | None = None  # replicas: the version of the rule state in `_state`
        self._section_version: int | None = None  # replicas, inside the rule-state lock: the version in the store
        self._why_whole: str | None = None  # why the cached state was dropped (the debug log)
        # In a turn, after a commit: the rows it changed and the version before it, until the turn ends committed.
        self._unconfirmed: tuple[list[tuple[str, str]], int] | None = None
        self._stale: set[tuple[str, str]] = set()  # rows a failed commit changed in `_state` alone: read again

    @property
    def cached(self) -> RuleState | None:
        """The rule state as last read or committed here (None before the first read, or after a failed commit)."""
        return self._state

    @contextlib.asynccontextmanager
    async def turn(self, *, exclusive: bool) -> AsyncIterator[RuleState]:
        """`async with`: the current rule state. Replicas, `exclusive`: under the rule-state lock, brought up to
        date inside it — two replicas routing into one group window never write it without each other's events."""
        if not (exclusive and self.shared):
            yield await self._current()
            return
        async with self._section(self._reads) as state:
            yield state

    def _reads(self) -> SectionReads:
        """What a turn reads as it begins: the version, and the log from the version this process's copy is at.
        Decided once the turn holds the section (the store calls it then): a turn that decided as it queued read
        back the entries of every turn of this process ahead of it as well — with a slot's polls queued together, a
        dozen entries a turn where the others' few were wanted, and nothing at all with one replica."""
        known = self._version if self._state is not None else None
        return SectionReads((VERSION, VERSION_KEY), LOG, None if known is None else log_key(known))

    @contextlib.asynccontextmanager
    async def _section(self, reads: Callable[[], SectionReads]) -> AsyncIterator[RuleState]:
        try:
            async with self.store.rules_section(reads) as view:  # the version and the log since, with the lock
                version = int(view.body or "0")
                self._catch_up(version, view.rows)
                self._version = self._section_version = version
                try:
                    yield await self._current()
                finally:
                    self._section_version = None
        except BaseException:
            # A commit inside the section is durable only when the section ends (PostgreSQL: it joins the section's
            # transaction): if that failed, what it recorded is read again, from the version before it.
            if self._unconfirmed is not None:
                rows, before = self._unconfirmed
                self._stale.update(rows)
                self._version = before
            raise
        finally:
            self._unconfirmed = None

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
            if rows:
                self._unconfirmed = ([(row.namespace, row.key) for row in changed], version - 1)
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
