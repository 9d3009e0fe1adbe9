"""When a poll completes a job, compare it with its baseline: the `job.compared` event and the kept outcomes.

The tracker asks after every poll; this decides whether the poll is the one to compare on — the poll that finished
the job with every run's outcome in, or else the confirming poll after it (outcomes can land late) — so each
completed job is compared once.
"""

from __future__ import annotations

import logging

from watcher.api.client import RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.core.events import JobCompared, event_id
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.memory import JobMemory
from watcher.core.models import BenchmarkJobView, JobState
from watcher.core.records import StateRow
from watcher.core.snapshot import Snapshot
from watcher.diff.compare import NotComparable
from watcher.diff.outcomes import job_outcomes
from watcher.pipeline.archive import OutcomeArchive
from watcher.pipeline.baseline import BaselineFinder, BaselineNotFound, BaselineSection
from watcher.store.protocol import Store

log = logging.getLogger("benchwatch.baseline")


class JobComparer:
    """Compares jobs as they complete. `on_discovery`: also a job first seen already completed (`wait` wants that;
    the service only keeps such a job's outcomes, so a restart or discovery does not compare a backlog)."""

    def __init__(
        self, finder: BaselineFinder, *, on_discovery: bool = False, baseline_job_id: str | None = None
    ) -> None:
        self.finder = finder
        self.on_discovery = on_discovery
        self.baseline_job_id = baseline_job_id
        self.not_comparable: NotComparable | None = None  # why the last job was not compared with its baseline

    async def after_poll(
        self, snapshot: Snapshot, before: JobMemory | None, after: JobMemory, *, late: bool = False
    ) -> tuple[tuple[JobCompared, ...], list[StateRow]]:
        """The event (if this poll is the one to compare on) and the state rows that keep the job's outcomes. A job
        caught up on (`late`: it completed before the watcher first saw it) is compared as a live watcher would
        have compared it, and its event is `late` too."""
        job = snapshot.job
        if job.state != JobState.COMPLETED or not after.finished or not _is_the_poll(job, before):
            return (), []
        if await self.finder.archive.load(job.id) is not None:
            return (), []  # compared (or kept) already
        current = job_outcomes(job)
        rows = self.finder.archive.rows(current)
        if before is None and not (self.on_discovery or late):
            return (), rows
        try:
            baseline = await self.finder.outcomes(self.baseline_job_id) if self.baseline_job_id else None
            compared = await self.finder.compare(current, baseline)
        except BaselineNotFound as exc:
            log.info("%s", exc)
            return (), rows
        except NotComparable as exc:  # no event over 0 paired scenarios
            self.not_comparable = exc
            log.warning("job %s not compared with its baseline: %s", job.id, exc)
            return (), rows
        except RunloopApiError as exc:
            log.warning("comparing job %s with its baseline failed: %s", job.id, exc)
            return (), rows
        event = JobCompared(
            id=event_id(job.id, "job.compared", compared.baseline.job_id),  # once per job (then archived)
            job_id=job.id,
            job_name=job.name,
            at_ms=snapshot.at_ms,
            late=late,
            **dict(compared.comparison),
        )
        return (event,), rows


def job_comparer(
    settings: BaselineSection | None,
    store: Store,
    client: RunloopClient | None,
    dashboard_url: str,
    classes: FailureClasses = DEFAULT_FAILURE_CLASSES,
) -> JobComparer | None:
    """The service's comparer: None without a `baseline:` section (then no job is compared)."""
    if settings is None:
        return None
    finder = BaselineFinder(OutcomeArchive(store), client, settings, dashboard_url=dashboard_url, classes=classes)
    return JobComparer(finder)


def _is_the_poll(job: BenchmarkJobView, before: JobMemory | None) -> bool:
    complete = _outcomes_complete(job)
    if before is None:
        return complete
    if not before.finished:
        return complete
    return before.polls_after_finish == 0  # the confirming poll: compare with what there is


def _outcomes_complete(job: BenchmarkJobView) -> bool:
    """Every agent of the spec has its run's outcome (a run's outcome can land a poll or two after the job ends)."""
    expected = len(job.job_spec.agent_configs) if job.job_spec is not None else 0
    return len({o.benchmark_run_id for o in job.benchmark_outcomes or ()}) >= expected
