"""The Alertmanager notifier: each incident is one alert on an existing Alertmanager (`POST /api/v2/alerts`), kept
alive while its incident is open and ended when a rule resolves it.

Alertmanager forgets an alert that is not posted again before its `endsAt`: every post says the alert ends four
`repost_interval`s later, and while the incident is open the service re-posts it every interval (`refresh`, run by
`notifiers.refresh.Refresher`), as Prometheus re-sends its firing alerts. An incident of a rule that nothing
resolves is posted once per notification and left to end by itself. What is open lives in the notifier's state
rows, one per incident (its dedup key), so every replica re-posts the same alerts and a restart resumes them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import urllib.parse
import weakref
from collections.abc import Awaitable, Sequence
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from notifiers.base import NotifierConfigBase
from notifiers.escape import plain_text
from notifiers.http import encode_json, location, post_classified, rfc3339
from notifiers.protocol import NotifierContext, RetryableSendError, SendError
from watcher.config.fields import DurationMs
from watcher.core.clock import Clock, SystemClock
from watcher.core.failures import Reason
from watcher.core.notification import Notification

log = logging.getLogger("benchwatch.delivery")

ALERTS_PATH: Final = "/api/v2/alerts"
OWN_LABELS: Final = ("alertname", "dedup_key", "severity", "job_id", "job_name", "benchmark", "agent")
_LABEL_NAME: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
LIFETIME_INTERVALS: Final = 4  # an alert outlives this many missed re-posts (Prometheus: 4 × its resend delay)
TOMBSTONE_KEEP_MS: Final = 30 * 86_400_000  # how long a resolution is remembered against a late trigger
POST_BATCH: Final = 500  # alerts per request when re-posting
MAX_SUMMARY_CHARS: Final = 1024
MAX_DESCRIPTION_CHARS: Final = 8000

T = TypeVar("T")


class AlertmanagerConfig(NotifierConfigBase):
    """`type: alertmanager`: the Alertmanager's `url`, static `labels` for every alert, basic auth (`username`,
    `password`) or a `bearer_token` (both secrets), `timeout` per request, and `repost_interval`."""

    type: Literal["alertmanager"]
    url: str
    labels: dict[str, str] = Field(default_factory=dict)
    username: str | None = None
    password: SecretStr | None = None
    bearer_token: SecretStr | None = None
    timeout_ms: DurationMs = Field(10_000, alias="timeout", gt=0)
    repost_interval_ms: DurationMs = Field(60_000, alias="repost_interval")

    @field_validator("url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected the Alertmanager's http:// or https:// address, e.g. http://alertmanager:9093")
        if "@" in parts.netloc:
            raise ValueError("credentials go in username and password (secrets), not in the URL")
        if parts.query or parts.fragment:
            raise ValueError("expected the Alertmanager's address without a query string")
        if parts.path.rstrip("/").endswith(ALERTS_PATH):
            raise ValueError(f"give the Alertmanager's address only: benchwatch adds {ALERTS_PATH}")
        return value

    @field_validator("repost_interval_ms")
    @classmethod
    def _at_least_a_second(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, label_value in value.items():
            if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"invalid label name {name[:80]!r}: letters, digits and _, not starting with __")
            if name in OWN_LABELS:
                raise ValueError(f"label {name!r} is set by benchwatch for each alert ({', '.join(OWN_LABELS)})")
            if not label_value:
                raise ValueError(f"label {name!r} is empty (Alertmanager treats an empty label as absent)")
        return value

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AlertmanagerConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        if self.bearer_token is not None and self.username is not None:
            raise ValueError("give either username and password, or bearer_token, not both")
        return self

    def alerts_url(self) -> str:
        """Where alerts are posted: the address and the API path."""
        return self.url.rstrip("/") + ALERTS_PATH

    def destination(self) -> str:
        """Where it sends (no secret)."""
        auth = ", basic auth" if self.username is not None else ", bearer token" if self.bearer_token else ""
        scheme = urllib.parse.urlsplit(self.url).scheme
        every_s = self.repost_interval_ms / 1000
        return f"Alertmanager: POST {scheme}://{location(self.alerts_url())} (re-posted every {every_s:g}s{auth})"


class StoredAlert(BaseModel):
    """An incident's alert as the notifier remembers it: its identity (labels) is fixed by the notification that
    opened it; `resolved_ms` is set once a resolution ended it (a row with no labels: ended before it was posted)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_ms: int
    ends_ms: int
    resolved_ms: int | None = None

    @property
    def firing(self) -> bool:
        """Still open: not resolved."""
        return self.resolved_ms is None

    def api_json(self, generator_url: str) -> dict[str, Any]:
        """The alert in Alertmanager's API v2 (`postableAlert`)."""
        alert: dict[str, Any] = {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_ms),
            "endsAt": rfc3339(self.ends_ms),
        }
        if generator_url:
            alert["generatorURL"] = generator_url
        return alert


class AlertmanagerNotifier:
    """Posts one alert per incident, re-posts it while the incident is open, and ends it on a resolution."""

    def __init__(
        self, name: str, config: AlertmanagerConfig, context: NotifierContext, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.refresh_interval_ms = config.repost_interval_ms
        self._config = config
        self._session = context.session
        self._state = context.state
        self._generator_url = context.status_url
        self._incident_rules = context.incident_rules
        self._clock = clock or SystemClock()
        self._url = config.alerts_url()
        self._what = f"alertmanager POST {location(self._url)}"
        self._headers = {"Content-Type": "application/json", "User-Agent": "benchwatch", **_auth_header(config)}
        # One send per incident at a time: its row is read, changed and written back (a trigger and its
        # resolution may be sent side by side after an outage).
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __repr__(self) -> str:
        return f"AlertmanagerNotifier(name={self.name!r}, url={location(self._url)!r})"

    @property
    def lifetime_ms(self) -> int:
        """How long after a post Alertmanager keeps an alert that is not posted again."""
        return LIFETIME_INTERVALS * self._config.repost_interval_ms

    async def send(self, notification: Notification) -> None:
        """Open (or update) the incident's alert, or end it."""
        key = notification.dedup_key
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            stored = await self._stateful(self._load(key))
            if notification.action == "resolve":
                await self._resolve(key, stored, notification)
            else:
                await self._trigger(key, stored, notification)

    async def refresh(self) -> int:
        """Re-post every alert whose incident is still open, with a new `endsAt`; returns how many. Alerts of rules
        that nothing resolves are not re-posted: they end by themselves, and their rows are then dropped."""
        now_ms = self._clock.now_ms()
        alerts = await self._all()
        await self._prune(alerts, now_ms)
        firing = {key: alert for key, alert in alerts.items() if alert.firing and alert.rule in self._incident_rules}
        if not firing:
            return 0
        ends_ms = now_ms + self.lifetime_ms
        await self._post([alert.model_copy(update={"ends_ms": ends_ms}) for alert in firing.values()])
        # A resolution recorded while this ran may have been posted before the re-post above: post its end again.
        again = await self._all()
        overtaken = [again[key] for key in firing if key in again and not again[key].firing and again[key].labels]
        if overtaken:
            await self._post(overtaken)
        return len(firing)

    async def _trigger(self, key: str, stored: StoredAlert | None, notification: Notification) -> None:
        if stored is not None and not stored.firing and notification.created_ms <= (stored.resolved_ms or 0):
            log.info(
                "not posted to %s: incident %r was resolved after this notification was made (%s)",
                self.name, key, notification.id,
            )  # fmt: skip
            return
        opened = stored if stored is not None and stored.firing else None
        alert = StoredAlert(
            rule=opened.rule if opened else notification.rule,
            labels=opened.labels if opened else alert_labels(notification, self._config.labels),
            annotations=alert_annotations(notification),
            starts_ms=opened.starts_ms if opened else notification.created_ms,
            ends_ms=self._clock.now_ms() + self.lifetime_ms,
        )
        await self._post([alert])
        await self._stateful(self._state.put(key, alert.model_dump_json()))

    async def _resolve(self, key: str, stored: StoredAlert | None, notification: Notification) -> None:
        ended_ms = notification.created_ms
        if stored is None:  # Alertmanager never had it: remember the end, so a trigger arriving late is not posted
            tombstone = StoredAlert(
                rule="", labels={}, annotations={}, starts_ms=ended_ms, ends_ms=ended_ms, resolved_ms=ended_ms
            )
            await self._stateful(self._state.put(key, tombstone.model_dump_json()))
            return
        if not stored.labels:  # ended before it was ever posted: nothing to end
            return
        resolved_ms = stored.resolved_ms if stored.resolved_ms is not None else ended_ms
        ended = stored.model_copy(update={"ends_ms": max(resolved_ms, stored.starts_ms), "resolved_ms": resolved_ms})
        # Remembered before it is posted: a re-post that read it as open checks again after posting (`refresh`).
        await self._stateful(self._state.put(key, ended.model_dump_json()))
        await self._post([ended])

    async def _prune(self, alerts: dict[str, StoredAlert], now_ms: int) -> None:
        for key, alert in list(alerts.items()):
            expired = alert.firing and alert.rule not in self._incident_rules and alert.ends_ms < now_ms
            forgotten = not alert.firing and now_ms - (alert.resolved_ms or 0) > TOMBSTONE_KEEP_MS
            if expired or forgotten:
                await self._state.delete(key)
                del alerts[key]

    async def _post(self, alerts: Sequence[StoredAlert]) -> None:
        for start in range(0, len(alerts), POST_BATCH):
            batch = alerts[start : start + POST_BATCH]
            body = encode_json_list([alert.api_json(self._generator_url) for alert in batch])
            await post_classified(
                self._session,
                self._url,
                body,
                self._headers,
                timeout_s=self._config.timeout_ms / 1000,
                what=self._what,
                clock=self._clock,
            )

    async def _load(self, key: str) -> StoredAlert | None:
        raw = await self._state.get(key)
        return _parsed(raw) if raw is not None else None

    async def _all(self) -> dict[str, StoredAlert]:
        rows = await self._state.rows()
        return {key: alert for key, raw in rows.items() if (alert := _parsed(raw)) is not None}

    async def _stateful(self, step: Awaitable[T]) -> T:
        """A step on the notifier's state rows; the store failing is a retryable send error, never a traceback."""
        try:
            return await step
        except SendError:
            raise
        except Exception as exc:
            message = f"{self._what}: the alert's state could not be read or written ({type(exc).__name__})"
            raise RetryableSendError(message, reason=Reason.SERVER_ERROR) from None


def alert_labels(notification: Notification, static: dict[str, str]) -> dict[str, str]:
    """The alert's identity: the rule, the incident, the severity, the job, its benchmark and the one agent the
    notification is about (when it is about one), then the notifier's static labels. Empty values are left out."""
    summary = notification.summary
    benchmark = (summary.benchmark_name or summary.benchmark_id) if summary is not None else None
    agents = {name for event in notification.events if (name := getattr(event, "agent_name", None))}
    first = notification.events[0] if notification.events else None
    job_name = summary.job_name if summary is not None else (first.job_name if first is not None else "")
    labels = {
        "alertname": notification.rule,
        "dedup_key": notification.dedup_key,
        "severity": notification.severity,
        "job_id": notification.job_id or "",
        "job_name": job_name,
        "benchmark": benchmark or "",
        "agent": next(iter(agents)) if len(agents) == 1 else "",
    }
    own = {name: _label_value(value) for name, value in labels.items()}
    return {name: value for name, value in own.items() if value} | static


def alert_annotations(notification: Notification) -> dict[str, str]:
    """`summary` (the title, one line) and `description` (the text), control characters removed."""
    title = " ".join(plain_text(notification.title).split()) or notification.rule
    return {
        "summary": _cut(title, MAX_SUMMARY_CHARS),
        "description": _cut(plain_text(notification.text), MAX_DESCRIPTION_CHARS),
    }


def encode_json_list(items: list[dict[str, Any]]) -> bytes:
    """A JSON array, compact (Alertmanager takes a list of alerts)."""
    return b"[" + b",".join(encode_json(item) for item in items) + b"]"


def _auth_header(config: AlertmanagerConfig) -> dict[str, str]:
    if config.username is not None and config.password is not None:
        pair = f"{config.username}:{config.password.get_secret_value()}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    if config.bearer_token is not None:
        return {"Authorization": "Bearer " + config.bearer_token.get_secret_value()}
    return {}


def _label_value(value: str) -> str:
    return " ".join(plain_text(value).split())


def _cut(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _parsed(raw: str) -> StoredAlert | None:
    try:
        return StoredAlert.model_validate_json(raw)
    except ValidationError:  # a row this version cannot read: left alone, never a crash
        return None
