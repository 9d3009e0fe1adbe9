"""The rule state the tracker routes with: cached from the store, and — with replicas — shared among them.

One process: the state is read from the store once and changed only by this process's own commits. Replicas
(PostgreSQL): it is read, changed and committed by one replica at a time, under the store's rule-state lock; inside,
the cached copy is brought up to the store's version with the rows the others logged since (one query), or read
whole when it is too far behind. A commit that changes the state moves the version on and logs what it changed.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

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
from watcher.store.protocol import Store


class SharedRuleState:
    """The rule state as the store holds it, cached; `shared`: other replicas change it too."""

    def __init__(self, store: Store, *, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self._state: RuleState | None = None
        self._version: int | None = None  # replicas: the version of the rule state in `_state`
        self._section_version: int | None = None  # replicas, inside the rule-state lock: the version in the store

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
        async with self.store.rules_section():
            version = int(await self.store.get_state(VERSION, VERSION_KEY) or "0")
            await self._catch_up(version)
            self._version = self._section_version = version
            try:
                yield await self._current()
            finally:
                self._section_version = None

    @contextlib.asynccontextmanager
    async def recording(self, changes: RuleStateChanges | None) -> AsyncIterator[list[StateRow]]:
        """`async with ... as rows`: the rows recording `changes`, for the caller to commit inside the block — with
        the version moved on and its log entry when a replica commits changes in its turn. If the block fails, the
        cache is dropped: what the store holds is the truth, read again next time."""
        rows = rows_for(changes) if changes is not None else []
        version = self._section_version
        if version is not None and rows:  # inside the rule-state lock: nobody else moves the version meanwhile
            version += 1
            log = [log_row(version, rows), StateRow(LOG, log_key(version - LOG_KEPT), None)]
            rows = [*rows, StateRow(VERSION, VERSION_KEY, str(version)), *log]
        try:
            yield rows
        except BaseException:
            self._state = None
            self._version = None
            raise
        if version is not None:
            self._version = self._section_version = version

    async def _current(self) -> RuleState:
        if self._state is None:
            self._state = await load_rule_state(self.store)
        return self._state

    async def _catch_up(self, version: int) -> None:
        """Bring the cache to the store's `version` (inside the rule-state lock): the rows the other replicas
        changed meanwhile, from the log, in one query; or, too far behind or with nothing cached, the whole state."""
        known, state = self._version, self._state
        if state is None or known is None or version == known:
            if known != version:
                self._state = None  # read whole by `_current`, at this version
            return
        if 0 < version - known <= LOG_KEPT:
            entries = await self.store.load_state_range(LOG, log_key(known + 1), log_key(version))
            if [entry.key for entry in entries] == [log_key(v) for v in range(known + 1, version + 1)]:
                for entry in entries:
                    for row in logged_rows(entry.body or "[]"):
                        apply_row(state, row)
                return
        self._state = None
