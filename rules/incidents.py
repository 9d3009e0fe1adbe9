"""The incident lifecycle: which incidents a rule's notifications leave open, and when they close by themselves.

A notification opens the incident named by its rule's `dedup_key`. A rule that some `resolves:` rule names keeps it
open until that resolution comes. A rule nothing resolves has no recovery to wait for, so its incident stays open
only while it can still need someone: until every job it is about has ended — reached a final state (`job.finished`,
or first seen finished) or vanished — and its notice was sent; an incident about no job (a watcher-wide event such
as `watcher.api_unreachable`) closes the rule's `resolve_after` after it was last sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from watcher.core.events import Event, JobDiscovered, JobFinished, JobVanished
from watcher.core.models import JobState
from watcher.core.summary import JobSummary

Incident = tuple[str, str]  # (rule name, dedup key)


@dataclass(frozen=True, slots=True)
class OpenIncident:
    """An open incident: when it opened, the jobs whose end it waits for, and when it closes by itself.

    `jobs` and `closes_ms` are set only for rules nothing resolves; an incident with neither closes only by a
    resolution (or when its rule leaves the config)."""

    opened_ms: int
    jobs: tuple[str, ...] = ()
    closes_ms: int | None = None

    def merged(self, later: OpenIncident) -> OpenIncident:
        """This incident notified again: it waits for the jobs of both notices, and the later closing time."""
        closes = [at for at in (self.closes_ms, later.closes_ms) if at is not None]
        return OpenIncident(self.opened_ms, tuple(sorted({*self.jobs, *later.jobs})), max(closes, default=None))

    def without(self, job_id: str) -> OpenIncident:
        """The same incident once `job_id` has ended."""
        return OpenIncident(self.opened_ms, tuple(job for job in self.jobs if job != job_id), self.closes_ms)

    def over_at(self, now_ms: int) -> bool:
        """Whether it closes by itself by `now_ms`: no job left to wait for, and its time (if any) has come."""
        return not self.jobs and self.closes_ms is not None and self.closes_ms <= now_ms


def ended_job(event: Event) -> str | None:
    """The job an event says has ended, if any: it finished, it vanished, or it was first seen finished."""
    if isinstance(event, JobFinished | JobVanished):
        return event.job_id
    if isinstance(event, JobDiscovered) and event.state in JobState.TERMINAL:
        return event.job_id
    return None


def opened_by(
    events: Sequence[Event], summary: JobSummary | None, ended: Iterable[str], *, at_ms: int, resolve_after_ms: int
) -> OpenIncident | None:
    """The incident a sent notice of a rule nothing resolves leaves open (None: nothing left to wait for).

    `ended`: jobs of these events known to have ended while the notice waited in its group window."""
    jobs = {event.job_id for event in events if event.job_id}
    if not jobs:
        return OpenIncident(at_ms, (), at_ms + resolve_after_ms)
    done = {*ended, *(job for event in events if (job := ended_job(event)) is not None)}
    if summary is not None and summary.state in JobState.TERMINAL:
        done.add(summary.job_id)
    waiting = tuple(sorted(jobs - done))
    return OpenIncident(at_ms, waiting) if waiting else None


def next_closing_ms(incidents: Iterable[OpenIncident]) -> int | None:
    """When the next incident closes by itself (its time comes), if any does."""
    return min((i.closes_ms for i in incidents if not i.jobs and i.closes_ms is not None), default=None)
