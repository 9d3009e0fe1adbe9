"""What the status server reads and acts on: the store, the metrics, and the running watcher's own view."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from aiohttp import web

from rules.config import SilenceConfig
from watcher.core.summary import JobSummary
from watcher.store.protocol import Store
from watcher.web.metrics import Metrics


class StatusSource(Protocol):
    """What the status API reads: the store, the metrics, and the running watcher's view of its own health."""

    @property
    def store(self) -> Store:
        """The store holding job memories and events."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The metrics rendered at /metrics."""
        ...

    async def readiness(self) -> tuple[bool, str]:
        """Whether the watcher is ready to serve, and why (or why not)."""
        ...

    async def refresh_metrics(self) -> None:
        """Bring gauges read from elsewhere (outbox, deliveries) up to date before a scrape."""
        ...

    def now_ms(self) -> int:
        """The watcher's clock, in ms since the epoch."""
        ...

    def action_token(self) -> str | None:
        """The token actions need (`http.token`), or None when actions are disabled."""
        ...

    def wake_delivery(self) -> None:
        """Tell the delivery worker the outbox has something due now."""
        ...

    async def reload(self) -> list[str]:
        """Re-read the config: [] when it took effect, else every problem (the old config keeps running)."""
        ...

    def summaries(self) -> Mapping[str, JobSummary]:
        """The latest derived summary of each job polled since start, by job id."""
        ...

    def config_silences(self) -> Sequence[SilenceConfig]:
        """The silences of the config file in force."""
        ...

    def dashboard_url(self) -> str:
        """The Runloop dashboard's address (jobs link there)."""
        ...

    def trend_jobs(self) -> int:
        """How many comparable jobs a trend chart covers: 10, or the config's `baseline.history` when larger."""
        ...

    def rule_names(self) -> Sequence[str]:
        """The rules of the config in force (the delivery log filters by them)."""
        ...

    def notifier_names(self) -> Sequence[str]:
        """The notifiers of the config in force (the delivery log filters by them)."""
        ...


SOURCE: Final = web.AppKey("source", StatusSource)
