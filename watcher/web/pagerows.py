"""The status page's rows: plain values the templates read, and how times and spans are printed."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from markupsafe import Markup

from watcher.core.events import EVENT_KINDS
from watcher.core.records import OutboxItem
from watcher.core.summary import FailureGroup
from watcher.store.rows import LOG_STATUSES

MAX_FILTER_CHARS: Final = 200


@dataclass(frozen=True, slots=True)
class Bar:
    """One progress bar: done of expected, split into completed, failed, timed out and canceled."""

    label: str
    completed: int
    failed: int
    timed_out: int
    canceled: int
    expected: int | None
    score: float | None = None
    url: str | None = None
    finished: bool = False

    @property
    def done(self) -> int:
        """Scenarios in a final state."""
        return self.completed + self.failed + self.timed_out + self.canceled

    @property
    def total(self) -> int:
        """What the bar's full width stands for: the expected count, or what is done when unknown."""
        return max(self.expected or 0, self.done, 1)

    def percent(self, count: int) -> float:
        """A segment's share of the bar's width, in %."""
        return round(100 * count / self.total, 2)

    @property
    def widths(self) -> dict[str, float]:
        """Each segment's width in % of the bar, by segment name."""
        return {
            "completed": self.percent(self.completed),
            "failed": self.percent(self.failed),
            "timeout": self.percent(self.timed_out),
            "canceled": self.percent(self.canceled),
        }


@dataclass(frozen=True, slots=True)
class JobRow:
    """One watched job as the page lists it."""

    job_id: str
    name: str
    state: str
    finished: bool
    age: str
    quiet_for: str
    bars: tuple[Bar, ...]
    pass_rate: float | None
    score: float | None  # the mean of its agents' scores (benchwatch's score, not the API's average of completed)
    failures: tuple[FailureGroup, ...]
    stalled: bool
    vanished: bool
    dashboard_url: str
    last_change_ms: int
    vanished_at: str = ""  # when the watcher found it gone (the poll that told job.vanished)


@dataclass(frozen=True, slots=True)
class EventRow:
    """One recorded event."""

    seq: int
    at: str
    kind: str
    job_id: str
    job_name: str
    text: str


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A silence from the store (with an id, expirable) or from the config file (read-only)."""

    id: str | None
    matchers: str
    state: str
    starts: str
    ends: str
    comment: str


@dataclass(frozen=True, slots=True)
class GroupRow:
    """An open group window."""

    rule: str
    key: str
    job_name: str
    events: int
    due: str


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """An incident a rule opened that still needs someone: no resolution closed it, its jobs have not all ended,
    or its `resolve_after` has not passed."""

    rule: str
    key: str
    opened: str
    until: str  # what closes it: `until nightly-7 ends`, `closes 2026-…`, `until resolved`


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One attempt at sending, in the delivery log."""

    at: str
    outcome: str
    http_status: int | None
    error: str


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """A notification in the delivery log, with its attempts."""

    id: str
    created: str
    rule: str
    notifier: str
    title: str
    jobs: str
    events: int
    status: str
    interrupted: int
    attempts: tuple[AttemptRow, ...]


@dataclass(frozen=True, slots=True)
class TrendChart:
    """One agent's trend: the chart (SVG built and escaped by `trend_svg`) and the same figures in words."""

    agent: str
    svg: Markup
    summary: str
    drops: tuple[str, ...]  # the names of the jobs that dropped significantly


@dataclass(frozen=True, slots=True)
class BenchmarkTrends:
    """A benchmark's trend charts, one per agent."""

    benchmark: str
    jobs: int  # the window: at most this many comparable jobs
    charts: tuple[TrendChart, ...]


@dataclass(frozen=True, slots=True)
class Filters:
    """The events' filters, from the query string."""

    job_id: str = ""
    kind: str = ""


class FilterError(ValueError):
    """A filter the delivery log cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class DeliveryFilters:
    """Which notifications the log shows: of one job, rule, notifier, status (empty: any)."""

    job_id: str = ""
    rule: str = ""
    notifier: str = ""
    status: str = ""

    @classmethod
    def from_query(cls, query: Mapping[str, str], prefix: str = "") -> DeliveryFilters:
        """The filters of a query string (the page's are `dl_job`, `dl_rule`, … beside the events' own filters);
        raises FilterError for an unknown status."""
        status = query.get(f"{prefix}status", "")
        if status and status not in LOG_STATUSES:
            raise FilterError(f"status must be one of {', '.join(LOG_STATUSES)}")
        return cls(
            job_id=query.get(f"{prefix}job", "")[:MAX_FILTER_CHARS],
            rule=query.get(f"{prefix}rule", "")[:MAX_FILTER_CHARS],
            notifier=query.get(f"{prefix}notifier", "")[:MAX_FILTER_CHARS],
            status=status,
        )

    def any(self) -> bool:
        """Whether some filter is set."""
        return bool(self.job_id or self.rule or self.notifier or self.status)


@dataclass
class PageView:
    """Everything the page shows."""

    now: str
    running: list[JobRow] = field(default_factory=list)
    vanished: list[JobRow] = field(default_factory=list)
    finished: list[JobRow] = field(default_factory=list)
    not_shown: int = 0
    events: list[EventRow] = field(default_factory=list)
    kinds: tuple[str, ...] = EVENT_KINDS
    job_names: list[tuple[str, str]] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)
    counts: dict[str, int] = field(default_factory=dict)
    pending: list[OutboxItem] = field(default_factory=list)
    sent: list[OutboxItem] = field(default_factory=list)
    dead: list[OutboxItem] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    incidents: list[IncidentRow] = field(default_factory=list)
    silences: list[SilenceRow] = field(default_factory=list)
    silence_prefill: str = ""
    trends: list[BenchmarkTrends] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    delivery_filters: DeliveryFilters = field(default_factory=DeliveryFilters)
    rule_names: list[str] = field(default_factory=list)
    notifier_names: list[str] = field(default_factory=list)
    statuses: tuple[str, ...] = LOG_STATUSES


def when(ms: int | None) -> str:
    """A time as the page prints it (UTC)."""
    return "—" if ms is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))


def span(ms: int) -> str:
    """A duration, roughly: 45s, 12m, 3h 5m, 2d 4h."""
    s = max(ms, 0) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86_400}d {s % 86_400 // 3600}h"
