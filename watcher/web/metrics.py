"""Prometheus metrics: what the poller, the API client and the delivery worker did, in one registry of our own.

The registry is private to each `Metrics` so that tests (and two watchers in one process) never share series, and
nothing a library registers globally leaks into our exposition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# No `*_created` series: a start time per counter that no dashboard reads, doubling the exposition (most exporters
# turn them off too). The switch is process-wide in prometheus_client; benchwatch is the whole process.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

# One poll is one HTTP exchange or a few: 1 ms to a 60 s timeout.
POLL_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A cycle polls every watched job, so it can outlast a single poll's timeout.
CYCLE_BUCKETS_S: Final = (*POLL_BUCKETS_S, 120.0, 300.0)

DeliveryKey = tuple[str, str, str]  # (notifier, outcome, reason)


class Metrics:
    """Every benchwatch series, with one method per thing that happened."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._polls = Counter("benchwatch_polls_total", "Job polls by outcome.", ["outcome"], registry=self.registry)
        self._poll_duration = Histogram(
            "benchwatch_poll_duration_seconds",
            "Time to poll one job.",
            buckets=POLL_BUCKETS_S,
            registry=self.registry,
        )
        self._cycle_duration = Histogram(
            "benchwatch_poll_cycle_duration_seconds",
            "Time to poll every watched job once.",
            buckets=CYCLE_BUCKETS_S,
            registry=self.registry,
        )
        self._api_errors = Counter(
            "benchwatch_api_errors_total",
            "Failed Runloop API requests by reason and HTTP status (none when no response).",
            ["reason", "status"],
            registry=self.registry,
        )
        self._events = Counter("benchwatch_events_total", "Events recorded, by kind.", ["kind"], registry=self.registry)
        self._notifications = Counter(
            "benchwatch_notifications_total",
            "Delivery attempts by notifier, outcome (sent, retry, dead) and reason (ok when sent).",
            ["notifier", "outcome", "reason"],
            registry=self.registry,
        )
        self._outbox_pending = Gauge(
            "benchwatch_outbox_pending", "Notifications waiting to be sent.", registry=self.registry
        )
        self._dead_letters = Gauge(
            "benchwatch_dead_letters", "Notifications given up on, kept in the outbox.", registry=self.registry
        )
        self._last_success = Gauge(
            "benchwatch_last_successful_poll_timestamp_seconds",
            "Unix time of the last poll that succeeded (0 before the first).",
            registry=self.registry,
        )
        self._watched = Gauge("benchwatch_watched_jobs", "Jobs being watched.", registry=self.registry)
        # Prometheus's own names for the same thing (prometheus_config_last_reload_*), so alerts carry over.
        self._reload_ok = Gauge(
            "benchwatch_config_last_reload_successful",
            "1 when the last config (re)load succeeded, 0 when it was refused.",
            registry=self.registry,
        )
        self._reload_at = Gauge(
            "benchwatch_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config (re)load.",
            registry=self.registry,
        )
        self._leases = Gauge(
            "benchwatch_job_leases_held", "Jobs this replica holds a lease on (polls).", registry=self.registry
        )
        self._claims = Gauge(
            "benchwatch_outbox_claims",
            "Pending notifications this replica has claimed to send.",
            registry=self.registry,
        )
        self._reachable = Gauge(
            "benchwatch_api_reachable", "1 when the last poll reached the Runloop API, else 0.", registry=self.registry
        )
        self._ready = Gauge(
            "benchwatch_ready", "1 when /readyz answers 200 (at the last scrape), else 0.", registry=self.registry
        )
        self._store_writable = Gauge(
            "benchwatch_store_writable",
            "1 when the state store takes writes, 0 from a failed write until one succeeds.",
            registry=self.registry,
        )
        self._interval = Gauge(
            "benchwatch_poll_interval_seconds", "The configured poll interval.", registry=self.registry
        )
        self._skipped = Counter(
            "benchwatch_poll_cycles_skipped_total",
            "Poll cycles not started because the previous one was still running (a cycle overran its interval).",
            registry=self.registry,
        )
        self._delivered: dict[DeliveryKey, int] = {}
        # Both outcomes exist from the start, so a rate of errors is 0 rather than absent before the first one.
        for outcome in ("ok", "error"):
            self._polls.labels(outcome=outcome)

    def poll(self, duration_s: float, ok: bool) -> None:
        """One job poll finished, successfully or not, after `duration_s`."""
        self._polls.labels(outcome="ok" if ok else "error").inc()
        self._poll_duration.observe(duration_s)

    def poll_cycle(self, duration_s: float) -> None:
        """One cycle over every watched job took `duration_s`."""
        self._cycle_duration.observe(duration_s)

    def api_error(self, reason: str, status: int | None) -> None:
        """A Runloop API request failed for `reason`, with that HTTP status or none (timeout, connection)."""
        self._api_errors.labels(reason=reason, status="none" if status is None else str(status)).inc()

    def events(self, kinds: Iterable[str]) -> None:
        """Events of these kinds were recorded (one entry per event)."""
        for kind in kinds:
            self._events.labels(kind=kind).inc()

    def sync_deliveries(self, stats: Mapping[DeliveryKey, int]) -> None:
        """Catch up with the delivery worker's cumulative counts, adding only what grew since the last sync."""
        for key, count in stats.items():
            previous = self._delivered.get(key, 0)
            # A count lower than last time means a new worker started counting from zero: all of it is new.
            added = count - previous if count >= previous else count
            if added > 0:
                notifier, outcome, reason = key
                self._notifications.labels(notifier=notifier, outcome=outcome, reason=reason).inc(added)
            self._delivered[key] = count

    def outbox(self, counts: Mapping[str, int]) -> None:
        """The outbox holds these many notifications per status (pending, sent, dead)."""
        self._outbox_pending.set(counts.get("pending", 0))
        self._dead_letters.set(counts.get("dead", 0))

    def last_successful_poll(self, at_s: float) -> None:
        """A poll succeeded at Unix time `at_s`."""
        self._last_success.set(at_s)

    def watched(self, n: int) -> None:
        """`n` jobs are being watched."""
        self._watched.set(n)

    def config_loaded(self, ok: bool, at_s: float) -> None:
        """A config (re)load at Unix time `at_s` succeeded or was refused."""
        self._reload_ok.set(1 if ok else 0)
        if ok:
            self._reload_at.set(at_s)

    def replica(self, leases_held: int, outbox_claims: int) -> None:
        """Replicas: the job leases this one holds and the sends it has claimed."""
        self._leases.set(leases_held)
        self._claims.set(outbox_claims)

    def api_reachable(self, ok: bool) -> None:
        """Whether the last attempt reached the Runloop API."""
        self._reachable.set(1 if ok else 0)

    def readiness(self, ready: bool, store_writable: bool) -> None:
        """What /readyz would answer now, and whether the store takes writes."""
        self._ready.set(1 if ready else 0)
        self._store_writable.set(1 if store_writable else 0)

    def poll_interval(self, seconds: float) -> None:
        """The poll interval in force."""
        self._interval.set(seconds)

    def cycle_skipped(self) -> None:
        """A poll cycle was due while the previous one still ran, and was skipped."""
        self._skipped.inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type, for a /metrics response."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
