"""Digests: one message per period with the jobs that finished in it, through any notifier (`digests:`).

`DigestMaker` gathers a period's jobs — their `job.finished` events from the store, their kept outcomes (or, for a
job the archive lacks, its view from the API), their `job.compared` and `job.infra_degraded` events — and renders
the message (pure: `watcher.diff.digest`). `DigestScheduler` sends each digest once per due time, across restarts
and replicas: the last due time sent is a state row, written in the same commit as the digest's notifications,
under the rule-state lock after checking it again; notification ids derive from the digest and its due time, so
even a second commit of the same digest would be kept once by the outbox. See docs/digests.md.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from datetime import time
from typing import Any, Final, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from rules.config import Where
from watcher.api.client import RunloopClient
from watcher.api.errors import RunloopApiError
from watcher.config.fields import DurationMs
from watcher.config.loader import Loc, StrictModel
from watcher.core.comparison import JobOutcomes
from watcher.core.events import Event, JobCompared, JobFinished
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses
from watcher.core.models import JobState
from watcher.core.notification import Notification, notification_id
from watcher.core.records import StateRow
from watcher.diff.digest import DigestJob, DigestSchedule, digest_job, digest_message
from watcher.diff.outcomes import job_outcomes
from watcher.pipeline.archive import OutcomeArchive
from watcher.store.protocol import Store

log = logging.getLogger("benchwatch.digest")

STATE_NAMESPACE: Final = "digests"
DAY_MS: Final = 86_400_000
MAX_FINISHED_READ: Final = 5000  # job.finished events read back per digest: far more than a period holds
_AT: Final = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class DigestConfig(StrictModel):
    """One entry of `digests:`: every `every` at `at` in `time_zone`, the jobs that finished since the last one and
    match `match` (as a rule's `where:`, on the `job.finished` event), to the notifiers in `notify`."""

    name: str = Field(min_length=1)
    at: str = Field("09:00", description="local time of day, HH:MM")
    time_zone: str = Field("UTC", description="an IANA time zone, such as Europe/Paris")
    every_ms: DurationMs = Field(DAY_MS, alias="every", description="whole days: 1d, 7d (Mondays)")
    match: Where = Field(default_factory=dict)
    notify: tuple[str, ...] = Field(min_length=1)
    skip_empty: bool = Field(False, description="send nothing for a period in which no matching job finished")

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not _AT.match(value):
            raise ValueError(f'expected a time of day as HH:MM (quoted, such as "09:00"), got {value!r}')
        return value

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name such as Europe/Berlin)") from None
        return value

    @field_validator("notify", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _whole_days(self) -> Self:
        if self.every_ms <= 0 or self.every_ms % DAY_MS:
            raise ValueError(f"every must be a whole number of days (1d, 7d), got {self.every_ms / DAY_MS:g} days")
        return self

    def schedule(self) -> DigestSchedule:
        """When this digest is due."""
        hours, minutes = (int(part) for part in self.at.split(":"))
        return DigestSchedule(time(hours, minutes), ZoneInfo(self.time_zone), self.every_ms // DAY_MS)

    def matches(self, finished: JobFinished) -> bool:
        """Whether a finished job belongs in this digest."""
        data = finished.model_dump(mode="json")
        return all(matcher.matches(data, None) for matcher in self.match.values())


def cross_check_digests(data: Any) -> list[tuple[Loc, str]]:
    """Digests naming a notifier the config lacks, and duplicate digest names, found in the raw config data."""
    if not isinstance(data, Mapping) or not isinstance(data.get("digests"), list):
        return []
    notifiers = data.get("notifiers")
    known = {str(name) for name in notifiers} if isinstance(notifiers, Mapping) else set()
    problems: list[tuple[Loc, str]] = []
    seen: set[str] = set()
    for index, digest in enumerate(data["digests"]):
        if not isinstance(digest, Mapping):
            continue
        name = digest.get("name")
        if isinstance(name, str):
            if name in seen:
                problems.append((("digests", index, "name"), f"duplicate digest name {name!r}"))
            seen.add(name)
        targets = digest.get("notify")
        listed = [targets] if isinstance(targets, str) else targets if isinstance(targets, list) else []
        for position, target in enumerate(listed):
            if isinstance(target, str) and target not in known:
                loc: Loc = (
                    ("digests", index, "notify") if isinstance(targets, str) else ("digests", index, "notify", position)
                )
                problems.append((loc, _unknown_notifier(target, known)))
    return problems


def _unknown_notifier(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"unknown notifier {name!r} (did you mean {close[0]!r}?)"
    return f"unknown notifier {name!r} (known: {', '.join(sorted(known)) or 'none defined'})"


class DigestMaker:
    """Builds a digest's jobs and message from the store (and the API, for outcomes the archive lacks)."""

    def __init__(
        self, store: Store, client: RunloopClient | None, classes: FailureClasses = DEFAULT_FAILURE_CLASSES
    ) -> None:
        self.store = store
        self.archive = OutcomeArchive(store)
        self.client = client
        self.classes = classes

    async def jobs(self, digest: DigestConfig, start_ms: int, end_ms: int) -> list[DigestJob]:
        """The jobs that finished in [start_ms, end_ms) and match the digest, oldest first."""
        found: dict[str, JobFinished] = {}
        for item in await self.store.events(kind="job.finished", newest_first=True, limit=MAX_FINISHED_READ):
            event = item.event
            if isinstance(event, JobFinished) and start_ms <= event.at_ms < end_ms and digest.matches(event):
                found.setdefault(event.job_id, event)
        rows = [await self._row(finished) for finished in found.values()]
        return sorted(rows, key=lambda row: (row.finished_ms, row.job_name))

    async def message(self, digest: DigestConfig, start_ms: int, end_ms: int) -> tuple[str, str, int]:
        """The digest's title and text for [start_ms, end_ms), and how many jobs it lists."""
        jobs = await self.jobs(digest, start_ms, end_ms)
        title, text = digest_message(digest.name, start_ms, end_ms, digest.schedule().zone, jobs)
        return title, text, len(jobs)

    async def notifications(self, digest: DigestConfig, start_ms: int, end_ms: int, now_ms: int) -> list[Notification]:
        """One notification per notifier of the digest (none for an empty period with `skip_empty`)."""
        title, text, count = await self.message(digest, start_ms, end_ms)
        if not count and digest.skip_empty:
            return []
        rule = f"digest:{digest.name}"
        return [
            Notification(
                id=notification_id(rule, notifier, rule, str(end_ms)),  # once per digest and due time
                rule=rule,
                notifier=notifier,
                severity="info",
                group_key=rule,
                dedup_key=f"{rule}:{end_ms}",
                created_ms=now_ms,
                title=title,
                text=text,
                events=(),
            )
            for notifier in digest.notify
        ]

    async def _row(self, finished: JobFinished) -> DigestJob:
        outcomes = await self._outcomes(finished)
        compared = await self._latest(finished.job_id, "job.compared")
        degraded = await self._latest(finished.job_id, "job.infra_degraded")
        return digest_job(
            finished,
            outcomes,
            compared if isinstance(compared, JobCompared) else None,
            self.classes,
            infra_degraded=degraded is not None,
        )

    async def _outcomes(self, finished: JobFinished) -> JobOutcomes | None:
        kept = await self.archive.load(finished.job_id)
        if kept is not None or self.client is None:
            return kept
        try:
            job = await self.client.get_job(finished.job_id)
        except RunloopApiError as exc:
            log.warning(
                "digest: the outcomes of job %s could not be fetched (%s); listed without", finished.job_id, exc
            )
            return None
        outcomes = job_outcomes(job)
        if job.state == JobState.COMPLETED:
            await self.archive.keep(outcomes)  # a completed job's outcomes do not change: kept for next time
        return outcomes

    async def _latest(self, job_id: str, kind: str) -> Event | None:
        items = await self.store.events(job_id=job_id, kind=kind, newest_first=True, limit=1)
        return items[0].event if items else None


class DigestScheduler:
    """Sends each configured digest once per due time; a digest due while nothing ran is sent at the next tick."""

    def __init__(self, store: Store, maker: DigestMaker, digests: Sequence[DigestConfig]) -> None:
        self.store = store
        self.maker = maker
        self.digests = tuple(digests)

    async def run_due(self, now_ms: int) -> int:
        """Send every digest due by `now_ms` and not sent yet; returns how many notifications were committed. One
        digest failing (the store, a bug) never stops the others."""
        committed = 0
        for digest in self.digests:
            try:
                committed += await self._run_one(digest, now_ms)
            except Exception:
                log.exception("digest %s failed; tried again at the next tick", digest.name)
        return committed

    async def _run_one(self, digest: DigestConfig, now_ms: int) -> int:
        schedule = digest.schedule()
        due_ms = schedule.due_at_or_before(now_ms)
        last_ms = await self._last_due(digest)
        if last_ms is None:  # a digest seen for the first time: the next due time is its first
            await self.store.put_state(STATE_NAMESPACE, digest.name, _state(due_ms))
            log.info("digest %s: first due after %s", digest.name, due_ms)
            return 0
        if last_ms >= due_ms:
            return 0
        # The period runs from the last digest sent: a watcher that was down sends one digest covering it all.
        notifications = await self.maker.notifications(digest, last_ms, due_ms, now_ms)
        async with self.store.rules_section():  # replicas: one at a time, and the row read again inside
            again = await self._last_due(digest)
            if again is not None and again >= due_ms:
                return 0
            row = StateRow(STATE_NAMESPACE, digest.name, _state(due_ms))
            await self.store.commit(state_rows=[row], notifications=notifications)
        log.info("digest %s sent to %s", digest.name, ", ".join(digest.notify))
        return len(notifications)

    async def _last_due(self, digest: DigestConfig) -> int | None:
        body = await self.store.get_state(STATE_NAMESPACE, digest.name)
        return int(json.loads(body)["last_due_ms"]) if body is not None else None


def _state(due_ms: int) -> str:
    return json.dumps({"last_due_ms": due_ms})


def digest_scheduler(
    digests: Sequence[DigestConfig], store: Store, client: RunloopClient | None, classes: FailureClasses
) -> DigestScheduler | None:
    """The service's digest scheduler: None without `digests:`."""
    if not digests:
        return None
    return DigestScheduler(store, DigestMaker(store, client, classes), digests)
