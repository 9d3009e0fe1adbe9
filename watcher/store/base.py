"""The store interface: what the watcher needs from its database, whatever the database is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from watcher.diff import JobMemory
from watcher.events import Event


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as recorded: its position in the store's log, and the event."""

    seq: int
    event: Event


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

    async def commit(self, memory: JobMemory, events: Sequence[Event]) -> int:
        """Record a poll's consequences atomically; returns how many events were new."""
        ...

    async def events(self, *, job_id: str | None = None, since_seq: int = 0, limit: int = 1000) -> list[StoredEvent]:
        """Recorded events in the order they were recorded, after `since_seq`."""
        ...
