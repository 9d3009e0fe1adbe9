"""Replicas sharing the work: which jobs this replica polls (its leases), and the heartbeat that keeps them.

With SQLite the one process holds every job and nothing here costs a query; with PostgreSQL each replica polls
only the jobs it holds a lease on, takes over those of a replica that stopped renewing, and reads a job's memory
from the store again whenever it takes the job over (another replica polled it meanwhile).
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from watcher.app.tracker import JobTracker
from watcher.core.clock import Clock
from watcher.core.storehealth import StoreHealth
from watcher.store.errors import StoreError, StoreWriteError
from watcher.store.protocol import Coordination

log = logging.getLogger("benchwatch.replicas")


class LeaseGate:
    """Admits to polling only the jobs this replica holds; its `heartbeat` renews them between cycles."""

    def __init__(
        self, coordination: Coordination, tracker: JobTracker, clock: Clock, store_health: StoreHealth | None = None
    ) -> None:
        self.coordination = coordination
        self.tracker = tracker
        self.clock = clock
        self.store_health = store_health or StoreHealth()  # shared with the poll cycle, the worker and /readyz
        self.held: frozenset[str] = frozenset()
        self._wanted: set[str] = set()

    async def admit(self, job_ids: Collection[str]) -> frozenset[str]:
        """The jobs to poll now: of `job_ids` (and of jobs orphaned by a dead replica) those this replica holds.
        An unreachable store admits nothing: what could not be committed is better not polled."""
        # Jobs held but not yet polled stay wanted; those come to rest are let go of.
        self._wanted = set(job_ids) | {job_id for job_id in self.held if not self.tracker.resting(job_id)}
        return await self.heartbeat()

    async def heartbeat(self) -> frozenset[str]:
        """Renew the leases (and this replica's outbox claims); take over what is free or expired."""
        try:
            holding = await self.coordination.hold(sorted(self._wanted), self.clock.now_ms())
        except StoreWriteError as exc:  # the database answers but cannot write: polls are held until it can
            if self.store_health.failed(self.clock.now_ms(), str(exc)):
                log.error("the state store cannot write (%s): polls are held until it can (logged once a minute)", exc)
            self.held = frozenset()
            return self.held
        except StoreError as exc:
            log.warning("cannot renew job leases: %s", exc)
            self.held = frozenset()
            return self.held
        for job_id in holding.acquired:
            self.tracker.forget(job_id)
        if holding.acquired:
            log.info("took over %d jobs: %s", len(holding.acquired), ", ".join(sorted(holding.acquired)[:10]))
        self.held = holding.held
        return self.held

    def holds(self, job_id: str) -> bool:
        """Whether this replica polls the job now."""
        return job_id in self.held
