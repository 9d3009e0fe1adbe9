"""Finding a job's baseline and comparing with it: the I/O around the pure `watcher.diff.compare`.

The store's kept outcomes are searched first; jobs this process never watched are found in the job list (newest
first, only as far back as needed) and their outcomes kept, so each is fetched once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Self

from pydantic import Field, model_validator

from watcher.api.client import RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.config.loader import StrictModel
from watcher.core.comparison import ComparisonFields, JobOutcomes
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.models import BenchmarkJobView, JobState
from watcher.diff.compare import (
    DEFAULT_FLAKY_MIN_FLIPS,
    DEFAULT_FLAKY_WINDOW,
    DEFAULT_MIN_EFFECT,
    CompareRules,
    FlakyRule,
    compare_jobs,
    recent_jobs,
)
from watcher.diff.outcomes import comparable_history, is_candidate, job_outcomes, pick_baseline
from watcher.pipeline.archive import OutcomeArchive

log = logging.getLogger("benchwatch.baseline")

PAGE_SIZE = 100


class BaselineSection(StrictModel):
    """`baseline:` compare each job that completes with the last earlier completed job of the same benchmark
    (docs/regressions.md); without this section no comparison is made."""

    name: str | None = Field(None, description="only jobs whose name matches this glob can be a baseline")
    history: int = Field(
        DEFAULT_FLAKY_WINDOW, ge=2, le=200, description="N: the comparable jobs before this one flakiness looks at"
    )
    flaky_flips: int = Field(
        DEFAULT_FLAKY_MIN_FLIPS, ge=1, le=199, description="k: flips within those N jobs that make a scenario flaky"
    )
    count_setup_failures: bool = Field(
        False, description="count scenarios that failed in setup as the agent's (by default they are listed apart)"
    )
    min_effect: float = Field(
        DEFAULT_MIN_EFFECT, gt=0, lt=1, description="the drop in pass rate a comparison should be able to see"
    )
    search_api: bool = Field(True, description="look for a baseline in the job list when the store has none newer")
    max_scan: int = Field(1000, ge=0, le=100_000, description="page the job list no further than this many jobs")

    @model_validator(mode="after")
    def _flips_fit(self) -> Self:
        if self.flaky_flips >= self.history:
            raise ValueError(f"flaky_flips ({self.flaky_flips}) must be less than history ({self.history})")
        return self


class BaselineNotFound(Exception):
    """A job has no baseline (or an explicit baseline job does not exist)."""


@dataclass(frozen=True)
class Compared:
    """A job's outcomes, its baseline's, the comparison of the two, and the recent jobs flakiness looked at."""

    current: JobOutcomes
    baseline: JobOutcomes
    comparison: ComparisonFields
    recent: tuple[JobOutcomes, ...] = ()
    rules: CompareRules = field(default_factory=CompareRules)


class BaselineFinder:
    """Finds baselines and history for jobs, from the store's kept outcomes and, when given a client, the API."""

    def __init__(
        self,
        archive: OutcomeArchive,
        client: RunloopClient | None,
        settings: BaselineSection | None = None,
        *,
        dashboard_url: str = "",
        classes: FailureClasses = DEFAULT_FAILURE_CLASSES,
    ) -> None:
        self.archive = archive
        self.client = client
        self.settings = settings or BaselineSection()
        self.dashboard_url = dashboard_url
        self.classes = classes  # which failures are setup's, not the agent's (`failure_classes:`)

    @property
    def rules(self) -> CompareRules:
        """How comparisons count, from the `baseline:` section and the failure classes."""
        settings = self.settings
        return CompareRules(
            flaky=FlakyRule(window=settings.history, min_flips=settings.flaky_flips),
            classes=self.classes,
            count_setup_failures=settings.count_setup_failures,
            min_effect=settings.min_effect,
        )

    async def outcomes(self, job_id: str) -> JobOutcomes:
        """A job's outcomes: kept ones, else fetched (a completed job's are kept). NotFoundError when unknown."""
        kept = await self.archive.load(job_id)
        if kept is not None:
            return kept
        if self.client is None:
            raise BaselineNotFound(f"job {job_id} is not in the store")
        return await self.keep(await self.client.get_job(job_id))

    async def keep(self, job: BenchmarkJobView) -> JobOutcomes:
        """The outcomes of a job view; kept when the job completed (a later poll cannot change them then)."""
        outcomes = job_outcomes(job)
        if job.state == JobState.COMPLETED:
            await self.archive.keep(outcomes)
        return outcomes

    async def baseline(self, current: JobOutcomes) -> JobOutcomes | None:
        """The most recent earlier completed job of the same benchmark (matching the name glob), or None."""
        glob = self.settings.name
        best = pick_baseline(current, await self.archive.comparable(current.benchmark), glob)
        if self.client is None or not self.settings.search_api:
            return best
        async with contextlib.aclosing(self._scan(current, newer_than=best)) as scan:
            async for found in scan:
                return found
        return best

    async def history(self, current: JobOutcomes, limit: int, *, search_api: bool = False) -> list[JobOutcomes]:
        """The last `limit` comparable jobs before `current`, oldest first; from the store, and the API if asked."""
        kept = await self.archive.comparable(current.benchmark)
        found = comparable_history(current, kept, self.settings.name, limit)
        if search_api and self.client is not None and len(found) < limit:
            known = {job.job_id for job in found}
            async with contextlib.aclosing(self._scan(current, newer_than=None)) as scan:
                async for job in scan:
                    if job.job_id not in known:
                        found.append(job)
                    if len(found) >= limit:
                        break
            found = comparable_history(current, found, self.settings.name, limit)
        return found

    async def compare(self, current: JobOutcomes, baseline: JobOutcomes | None = None) -> Compared:
        """Compare `current` with `baseline` (default: its baseline); raises BaselineNotFound when there is none."""
        if baseline is None:
            baseline = await self.baseline(current)
        if baseline is None:
            raise BaselineNotFound(
                f"job {current.job_name} ({current.job_id}) has no baseline: no earlier completed job of its benchmark"
            )
        history = await self.history(current, self.settings.history)
        rules = self.rules
        # The bootstrap is pure CPU (~0.3 s per 1,000 scenario pairs): a thread keeps the event loop answering.
        comparison = await asyncio.to_thread(
            compare_jobs, current, baseline, history, rules=rules, dashboard_url=self.dashboard_url
        )
        recent = recent_jobs(current, baseline, history, rules.flaky.window)
        return Compared(current, baseline, comparison, tuple(recent), rules)

    async def _scan(self, current: JobOutcomes, *, newer_than: JobOutcomes | None) -> AsyncGenerator[JobOutcomes, None]:
        """Comparable completed jobs before `current` from the job list, newest first, each kept as found; stops at
        `newer_than` (what the store already offers) and after `max_scan` jobs."""
        assert self.client is not None
        floor = (newer_than.create_time_ms, newer_than.job_id) if newer_than is not None else None
        scanned = 0
        try:
            jobs = self.client.iter_jobs(page_size=min(PAGE_SIZE, max(1, self.settings.max_scan)))
            async with contextlib.aclosing(jobs):  # closed on the way out, not left to the collector
                async for job in jobs:
                    scanned += 1
                    if scanned > self.settings.max_scan:
                        return
                    if floor is not None and (job.create_time_ms, job.id) <= floor:
                        return
                    if job.state != JobState.COMPLETED:
                        continue
                    candidate = job_outcomes(job)
                    if is_candidate(current, candidate, self.settings.name):
                        if _lacks_scenarios(job):  # a list that abridges outcomes: fetch this one job whole, once
                            candidate = job_outcomes(await self.client.get_job(job.id))
                        await self.archive.keep(candidate)
                        yield candidate
        except RunloopApiError as exc:
            log.warning("looking for earlier jobs of %s in the job list failed: %s", current.benchmark, exc)


def _lacks_scenarios(job: BenchmarkJobView) -> bool:
    """Whether a listed job's outcomes come without their per-scenario results."""
    return any(outcome.scenario_outcomes is None for outcome in job.benchmark_outcomes or ())
