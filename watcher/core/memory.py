"""What the watcher remembers of a job between polls: all the diff needs to diff the next snapshot."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from watcher.core.events import Counters


class RunMemo(BaseModel):
    """What the diff remembers of one benchmark run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    agent_name: str | None = None
    model_name: str | None = None
    finished: bool = False
    average_score: float | None = None  # the API's: the mean over completed scenarios only
    score: float | None = None  # benchwatch's (watcher/core/score.py): what `score.changed` follows
    # counters (completed, failed, timeout, canceled) from the last scenario runs seen while in progress
    counts: tuple[int, int, int, int] | None = None


class JobMemory(BaseModel):
    """Everything the diff needs to know about a job to diff its next snapshot; stored as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    job_name: str
    state: str
    finished: bool
    counters: Counters
    runs: dict[str, RunMemo]
    unresolved: dict[str, dict[str, str]]  # run id → scenario definition id → FAILED | TIMEOUT | CANCELED
    first_seen_ms: int
    last_seen_ms: int
    last_change_ms: int
    fingerprint: str | None = None
    polls_after_finish: int = 0  # a finished job gets one confirming poll (late outcomes), then rests
    stalled: bool = False  # job.stalled was told for the current quiet spell
    # Time in the current quiet spell not covered by successful polls (polls failed, or the watcher was down):
    # a job is stalled on what successful polls showed, never on an outage of ours or the API's.
    blind_ms: int = 0
    vanished: bool = False  # job.vanished was told: the job answers 404

    @property
    def resting(self) -> bool:
        """No longer polled: vanished, or finished and confirmed by one more poll (late outcomes)."""
        return self.vanished or (self.finished and self.polls_after_finish >= 1)
