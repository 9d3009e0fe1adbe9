"""The latest summaries of the jobs whose polls revealed events, bounded: what the status page shows in full."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping

from watcher.core.summary import JobSummary

SUMMARIES_KEPT = 500  # the status page shows these jobs in full (agents, failures), others by their counters


class RecentSummaries(Mapping[str, JobSummary]):
    """Job id → the job's latest summary, for the last `kept` jobs that changed (least recently changed dropped)."""

    def __init__(self, kept: int = SUMMARIES_KEPT) -> None:
        self._kept = kept
        self._summaries: OrderedDict[str, JobSummary] = OrderedDict()  # least recently changed first

    def keep(self, summary: JobSummary) -> None:
        """Remember `summary` as its job's latest; bounded, however many jobs (the page of thousands shows
        counters)."""
        self._summaries[summary.job_id] = summary
        self._summaries.move_to_end(summary.job_id)
        if len(self._summaries) > self._kept:
            self._summaries.popitem(last=False)

    def __getitem__(self, job_id: str) -> JobSummary:
        return self._summaries[job_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._summaries)

    def __len__(self) -> int:
        return len(self._summaries)
