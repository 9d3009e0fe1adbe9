"""Replicas sharing the work: which jobs this replica polls (its leases), and the heartbeat that keeps them.

With SQLite the one process holds every job and nothing here costs a query; with PostgreSQL each replica polls
only the jobs it holds a lease on, takes over those of a replica that stopped renewing, and reads a job's memory
from the store again whenever it takes the job over (another replica polled it meanwhile).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from watcher.core.clock import Clock
from watcher.core.records import OutboxLook
from watcher.core.storehealth import StoreHealth
from watcher.pipeline.tracker import JobTracker
from watcher.store.errors import StoreError, StoreWriteError
from watcher.store.protocol import Coordination

log = logging.getLogger("benchwatch.replicas")


class LeaseGate:
    """Admits to polling only the jobs this replica holds; its `heartbeat` renews them between cycles."""

    def __init__(
        self,
        coordination: Coordination,
        tracker: JobTracker,
        clock: Clock,
        store_health: StoreHealth | None = None,
        *,
        on_takeover: Callable[[], None] | None = None,
        on_outbox: Callable[[OutboxLook], None] | None = None,
        reuse_ms: int | None = None,
        timers_for_ms: int = 0,
    ) -> None:
        self.coordination = coordination
        # A cycle's `admit` wanting the very jobs the last heartbeat held, within this long of it, takes that
        # heartbeat's answer instead of a transaction of its own (the heartbeat period: the leases are as fresh as
        # the heartbeat keeps them anyway). None: every admit renews.
        self._reuse_ms = reuse_ms
        self._last_beat: tuple[frozenset[str], int] | None = None  # what the last good heartbeat wanted, and when
        self._on_takeover = on_takeover  # jobs taken over: the dead replica's unsent notifications are due here too
        self._on_outbox = on_outbox  # what each good heartbeat saw of the outbox: the delivery worker's look
        self.tracker = tracker
        self.clock = clock
        self.store_health = store_health or StoreHealth()  # shared with the poll cycle, the worker and /readyz
        self.held: frozenset[str] = frozenset()
        self._wanted: set[str] = set()
        self._elsewhere: set[str] = set()  # new jobs that discovery found and another replica polls
        self._rest_unmarked: set[str] = set()  # held jobs that came to rest, not yet marked (the store was away)
        self._fresh: set[str] = set()  # jobs taken over since the last cycle took them: polled first, not spread
        self._beat = asyncio.Lock()
        # The rule-timer claim, taken or renewed by each heartbeat for a lease TTL: this replica flushes the timers
        # while its last good heartbeat, within `timers_for_ms`, held the claim (see `holds_timers`); 0: never (a
        # gate that only admits polls, as in tests of the leases alone).
        self._timers_for_ms = timers_for_ms
        self._timers_ms: int | None = None  # when the last good heartbeat held the claim; None: it did not

    async def admit(self, job_ids: Collection[str], *, new: Collection[str] = ()) -> frozenset[str]:
        """The jobs to poll now: of `job_ids`, of the `new` ones discovery found, and of jobs orphaned by a dead
        replica, those this replica holds. An unreachable store admits nothing: what could not be committed is
        better not polled."""
        # Jobs held but not yet polled stay wanted; those that came to rest are marked so by the heartbeat.
        self._wanted = {*job_ids, *new, *(job_id for job_id in self.held if not self.tracker.resting(job_id))}
        if self._recent(self._wanted):
            return self.held
        held = await self.heartbeat()
        self._elsewhere.update(job_id for job_id in new if job_id not in held)
        return held

    def _recent(self, wanted: set[str]) -> bool:
        """Whether the last heartbeat, within `reuse_ms`, held for exactly these jobs (so nothing is new, nothing
        came to rest, nothing is left to mark). A renewal at each cycle besides the scheduled heartbeats, with their
        statements one round trip each, was a third of an idle replica's CPU on PostgreSQL."""
        if self._reuse_ms is None or self._last_beat is None or self._rest_unmarked:
            return False
        beat_wanted, beat_ms = self._last_beat
        return beat_wanted == wanted and 0 <= self.clock.now_ms() - beat_ms < self._reuse_ms

    async def heartbeat(self) -> frozenset[str]:
        """Renew the leases (and this replica's outbox claims), mark the jobs that came to rest, take over what is
        free or expired. One at a time: a heartbeat between cycles and a cycle's own never interleave."""
        async with self._beat:
            return await self._beat_once()

    async def _beat_once(self) -> frozenset[str]:
        rested = sorted(job_id for job_id in self.held | self._rest_unmarked if self.tracker.resting(job_id))
        self._last_beat = None
        wanted, now_ms = frozenset(self._wanted), self.clock.now_ms()
        try:
            holding = await self.coordination.hold(sorted(wanted), now_ms, rested=rested)
        except StoreWriteError as exc:  # the database answers but cannot write: polls are held until it can
            if self.store_health.failed(self.clock.now_ms(), str(exc)):
                log.error("the state store cannot write (%s): polls are held until it can (logged once a minute)", exc)
            self._rest_unmarked.update(rested)
            self.held = frozenset()
            return self.held
        except StoreError as exc:
            log.warning("cannot renew job leases: %s", exc)
            self._rest_unmarked.update(rested)
            self.held = frozenset()
            return self.held
        self._rest_unmarked.clear()
        for job_id in holding.resting:  # another replica saw it come to rest: the memory here is stale
            self.tracker.rested_elsewhere(job_id)
        self._wanted -= holding.resting
        # Taken over: wanted from now on. A job taken between two cycles was not in the last cycle's list of wanted
        # jobs, and the next heartbeat — now on time, on a connection of its own — let go of it before any cycle
        # polled it: on 'many', 27 of a dead replica's 56 jobs bounced between the survivors for over 15 s.
        self._wanted |= holding.acquired
        for job_id in holding.acquired:
            self.tracker.forget(job_id)
            self._elsewhere.discard(job_id)
        self._fresh = (self._fresh | holding.acquired) & holding.held
        if holding.acquired:
            log.info("took over %d jobs: %s", len(holding.acquired), ", ".join(sorted(holding.acquired)[:10]))
            if self._on_takeover is not None:
                self._on_takeover()
        self.held = holding.held
        if holding.outbox is not None and self._on_outbox is not None:
            self._on_outbox(holding.outbox)
        self._last_beat = (frozenset(self._wanted), now_ms)
        self._timers_ms = now_ms if holding.timers else None
        return self.held

    def holds_timers(self) -> bool:
        """Whether this replica is the one that flushes the rule timers and sends the digests now: its last good
        heartbeat, at most `timers_for_ms` ago, took or renewed the rule-timer claim.

        The claim costs no transaction of its own — each heartbeat renews it in its round trip, where a claim taken
        every second was a transaction a second of every replica. A dead holder's claim is free after a lease TTL,
        and the next heartbeat of another replica takes it: the timers go on within TTL + a heartbeat. Two replicas
        that both believe they hold it (a holder paused past its TTL) flush safely: a flush and a digest run in a
        rule-state section, one replica at a time, and what the first did the second finds done."""
        if self._timers_ms is None:
            return False
        return 0 <= self.clock.now_ms() - self._timers_ms < self._timers_for_ms

    def has_fresh(self) -> bool:
        """Whether jobs were taken over that no cycle has taken yet."""
        return bool(self._fresh)

    def take_fresh(self) -> set[str]:
        """The jobs taken over since the last call (a dead replica's: they have waited a lease TTL already)."""
        fresh, self._fresh = self._fresh, set()
        return fresh

    def holds(self, job_id: str) -> bool:
        """Whether this replica polls the job now."""
        return job_id in self.held

    def polled_elsewhere(self, job_id: str) -> bool:
        """Whether discovery found the job before and another replica polls it: it is not new here."""
        return job_id in self._elsewhere
