"""Whether the watcher can see: `watcher.api_unreachable` when every call has failed for a while, then
`watcher.api_recovered` when one succeeds again."""

from __future__ import annotations

from watcher.core.events import Event, WatcherApiRecovered, WatcherApiUnreachable, event_id


class ApiHealth:
    """Tracks consecutive API failures; says once when the watcher went blind and once when it sees again."""

    def __init__(self, unreachable_after_ms: int) -> None:
        self.unreachable_after_ms = unreachable_after_ms
        self.first_failure_ms: int | None = None
        self.failures = 0
        self.last_error = ""
        self.reported_ms: int | None = None

    @property
    def reachable(self) -> bool:
        """False from the first failure until the next success."""
        return self.first_failure_ms is None

    def succeeded(self, now_ms: int) -> Event | None:
        """A call got an answer; returns `watcher.api_recovered` if an outage had been reported."""
        event = None
        if self.reported_ms is not None and self.first_failure_ms is not None:
            event = WatcherApiRecovered(
                id=event_id("", "watcher.api_recovered", str(self.first_failure_ms)),
                job_id="",
                job_name="",
                at_ms=now_ms,
                down_for_ms=now_ms - self.first_failure_ms,
            )
        self.first_failure_ms, self.failures, self.reported_ms = None, 0, None
        return event

    def failed(self, now_ms: int, error: str) -> None:
        """A call failed even after the client's retries."""
        if self.first_failure_ms is None:
            self.first_failure_ms = now_ms
        self.failures += 1
        self.last_error = error

    def check(self, now_ms: int) -> Event | None:
        """`watcher.api_unreachable` once every call has failed for `unreachable_after_ms`."""
        if self.first_failure_ms is None or self.reported_ms is not None:
            return None
        if now_ms - self.first_failure_ms < self.unreachable_after_ms:
            return None
        self.reported_ms = now_ms
        return WatcherApiUnreachable(
            id=event_id("", "watcher.api_unreachable", str(self.first_failure_ms)),
            job_id="",
            job_name="",
            at_ms=now_ms,
            since_ms=self.first_failure_ms,
            failures=self.failures,
            last_error=self.last_error,
        )
