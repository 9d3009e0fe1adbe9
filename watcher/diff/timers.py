"""Events that time, not a snapshot, reveals: a job that stalls, a job that vanished. Pure functions."""

from __future__ import annotations

from watcher.core.events import JobStalled, JobVanished, event_id
from watcher.core.memory import JobMemory
from watcher.core.models import JobState


def stall(memory: JobMemory, now_ms: int, stall_after_ms: int) -> tuple[JobStalled, JobMemory] | None:
    """`job.stalled` when successful polls of a running job have shown no change for `stall_after_ms` — once per
    quiet spell. Quiet time ends at the last successful poll and leaves out the spells the job could not be seen
    (`blind_ms`): an API outage, or a watcher that was down, never makes a job look stalled."""
    quiet_ms = min(now_ms, memory.last_seen_ms) - memory.last_change_ms - memory.blind_ms
    if memory.finished or memory.vanished or memory.stalled or memory.state != JobState.RUNNING:
        return None
    if quiet_ms < stall_after_ms:
        return None
    event = JobStalled(
        id=event_id(memory.job_id, "job.stalled", "", str(memory.last_change_ms)),  # once per quiet spell
        job_id=memory.job_id,
        job_name=memory.job_name,
        at_ms=now_ms,
        state=memory.state,
        stalled_for_ms=quiet_ms,
        last_change_ms=memory.last_change_ms,
        n_done=memory.counters.n_done,
        n_expected=memory.counters.n_expected,
    )
    return event, memory.model_copy(update={"stalled": True})


def vanish(memory: JobMemory, now_ms: int) -> tuple[JobVanished, JobMemory] | None:
    """`job.vanished` for a job that answered 404 twice in a row — once."""
    if memory.vanished:
        return None
    event = JobVanished(
        id=event_id(memory.job_id, "job.vanished", "", str(memory.last_change_ms)),
        job_id=memory.job_id,
        job_name=memory.job_name,
        at_ms=now_ms,
        last_state=memory.state,
    )
    return event, memory.model_copy(update={"vanished": True, "last_seen_ms": now_ms})
