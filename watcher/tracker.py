"""The one code path from a snapshot to recorded events: load what we knew, diff, commit atomically."""

from __future__ import annotations

import logging

from watcher.diff import JobMemory, diff
from watcher.events import Event
from watcher.snapshot import Snapshot
from watcher.store.base import Store

log = logging.getLogger("benchwatch.tracker")


class JobTracker:
    """Turns snapshots into events recorded in the store; `run`, `wait`, `replay` and `demo` all use it.

    Memories are cached after the first load; the cache changes only after the store committed, so a failed
    commit leaves the tracker where the store is, and the next snapshot yields the same events again.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._memories: dict[str, JobMemory] = {}

    async def observe(self, snapshot: Snapshot) -> tuple[Event, ...]:
        """Diff `snapshot` against the job's memory, record the result, and return the new events."""
        job_id = snapshot.job.id
        memory = self._memories.get(job_id)
        if memory is None:
            memory = await self.store.load_memory(job_id)
        result = diff(memory, snapshot)
        for warning in result.warnings:
            log.warning("%s", warning)
        if result.events or memory is None or _material(result.memory) != _material(memory):
            await self.store.commit(result.memory, result.events)
        self._memories[job_id] = result.memory
        return result.events

    def memory(self, job_id: str) -> JobMemory | None:
        """The cached memory of a job this tracker has observed."""
        return self._memories.get(job_id)


def _material(memory: JobMemory) -> JobMemory:
    """The memory without what changes on every poll: not worth a write by itself."""
    return memory.model_copy(update={"last_seen_ms": 0, "fingerprint": None})
