"""Malformed items of the job list, reported once each: cheap to import (the client builds a reporter at start)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger("benchwatch.client")

_SHOWN_ID_CHARS = 80  # an id from the API is shown, not trusted: a 10k-character one must not flood the log
_REMEMBERED_REJECTS = 10_000  # bounds the memory of items already reported


@dataclass(frozen=True)
class RejectedJob:
    """A listed item that is not a usable job: its id (when it has a string one), position and why."""

    job_id: str | None
    index: int
    problem: str

    def describe(self) -> str:
        """One log line's worth, the id escaped and shortened."""
        shown = repr(self.job_id[:_SHOWN_ID_CHARS]) if self.job_id is not None else "without an id"
        return f"job {shown} (item {self.index} of its page): {self.problem}"


class RejectReporter:
    """Logs each rejected item once (by id, or by position and problem when it has no id), not on every poll."""

    def __init__(self) -> None:
        self._reported: set[str] = set()
        self.seen = 0  # rejected items met, reported or not: discovery holds its mark while any is in its way

    def report(self, rejected: RejectedJob) -> None:
        """Warn about `rejected` unless it was reported already."""
        self.seen += 1
        key = rejected.job_id if rejected.job_id is not None else f"#{rejected.index}:{rejected.problem}"
        if key in self._reported:
            return
        if len(self._reported) >= _REMEMBERED_REJECTS:
            self._reported.clear()
        self._reported.add(key)
        log.warning("skipping a malformed %s; the other jobs are read", rejected.describe())
