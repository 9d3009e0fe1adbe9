"""The PagerDuty notifier: Events API v2 — trigger with the rule's dedup key, resolve when a rule resolves."""

from __future__ import annotations

import hashlib
from typing import Any, Final, Literal

from pydantic import SecretStr

from notifiers.base import NotifierConfigBase
from notifiers.compared import MAX_LISTED, agent_headline, compared_events
from notifiers.escape import plain_text
from notifiers.http import location, rfc3339
from notifiers.jsonhook import JsonWebhookNotifier
from watcher.core.events import Counters, JobCompared
from watcher.core.notification import Notification
from watcher.core.summary import FailureGroup, JobSummary

EVENTS_API_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyConfig(NotifierConfigBase):
    """`type: pagerduty`: the integration's `routing_key`; `url` for a proxy or a test server."""

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: str = EVENTS_API_URL

    def destination(self) -> str:
        """Where it sends."""
        return f"Events API v2 at {location(self.url)}"

    @property
    def timeout_ms(self) -> int:
        """How long one POST may take (not configurable for PagerDuty)."""
        return DEFAULT_TIMEOUT_MS


DEFAULT_TIMEOUT_MS: Final = 10_000
MAX_SUMMARY_CHARS: Final = 1024
MAX_FIELD_CHARS: Final = 255
MAX_DEDUP_KEY_CHARS: Final = 255
MAX_LINKS: Final = 5
MAX_FAILURE_GROUPS: Final = 5
MAX_MESSAGE_CHARS: Final = 500


class PagerDutyNotifier(JsonWebhookNotifier[PagerDutyConfig]):
    """Opens a PagerDuty incident per dedup key on `trigger`, and closes it on `resolve` (the API answers 202)."""

    def describe(self) -> str:
        """The Events API's address."""
        return f"pagerduty POST {location(self._config.url)}"

    def shown(self) -> str:
        """The address, without a query string."""
        return f"url={location(self._config.url)!r}"

    def url(self) -> str:
        """The Events API (or the configured proxy)."""
        return self._config.url

    def document(self, notification: Notification) -> dict[str, Any]:
        """One trigger or resolve event."""
        return events_api_body(notification, self._config.routing_key.get_secret_value())


def events_api_body(notification: Notification, routing_key: str) -> dict[str, Any]:
    """The Events API v2 request: a resolve names only the incident; a trigger describes it."""
    envelope: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": notification.action,
        "dedup_key": dedup_key(notification.dedup_key),
    }
    if notification.action == "resolve":
        return envelope
    summary = notification.summary
    envelope["payload"] = _payload(notification)
    envelope["client"] = "benchwatch"
    if summary is not None:
        envelope["client_url"] = summary.dashboard_url
        envelope["links"] = [
            {"href": agent.url, "text": _short(f"{agent.agent_name or agent.benchmark_run_id} run", MAX_FIELD_CHARS)}
            for agent in summary.agents[:MAX_LINKS]
        ]
    return envelope


def dedup_key(key: str) -> str:
    """The key as PagerDuty takes it (≤ 255 chars): longer ones are cut and hashed, so a resolve still matches."""
    if len(key) <= MAX_DEDUP_KEY_CHARS:
        return key
    digest = hashlib.blake2b(key.encode(), digest_size=16).hexdigest()
    return f"{key[: MAX_DEDUP_KEY_CHARS - len(digest) - 1]}:{digest}"


def _payload(notification: Notification) -> dict[str, Any]:
    job_name = _job_name(notification)
    agent = next((name for event in notification.events if (name := getattr(event, "agent_name", None))), None)
    return {
        "summary": _short(notification.title, MAX_SUMMARY_CHARS) or notification.rule,
        "source": _short(job_name, MAX_FIELD_CHARS) if job_name else "benchwatch",
        # Our three severities are PagerDuty's names too; PagerDuty's "error" has no counterpart here.
        "severity": notification.severity,
        "timestamp": rfc3339(notification.created_ms),
        "component": _short(agent or job_name or "benchwatch", MAX_FIELD_CHARS),
        "group": _short(job_name or "benchwatch", MAX_FIELD_CHARS),
        "class": notification.events[0].kind if notification.events else "notification",
        "custom_details": custom_details(notification),
    }


def custom_details(notification: Notification) -> dict[str, Any]:
    """What the incident shows under details: the rule, the text, and the job's state, counters and failures."""
    details: dict[str, Any] = {
        "rule": notification.rule,
        "notification_id": notification.id,
        "text": plain_text(notification.text),
    }
    summary = notification.summary
    if summary is not None:
        details |= _job_details(summary)
    compared = compared_events(notification)
    if compared:
        details["vs_baseline"] = [_comparison_details(event) for event in compared]
    return details


def _comparison_details(event: JobCompared) -> dict[str, Any]:
    """A `job.compared` in the incident: per agent the change and the regressed scenarios' names (at most 10)."""
    return {
        "baseline_job_name": event.baseline_job_name,
        "significant": event.significant,
        "agents": [
            {
                "change": agent_headline(agent),
                "regressions": [ref.scenario_name for ref in agent.regressions[:MAX_LISTED]],
                "n_regressions": len(agent.regressions),
            }
            for agent in event.agents
        ],
    }


def _job_details(summary: JobSummary) -> dict[str, Any]:
    return {
        "job_id": summary.job_id,
        "job_name": summary.job_name,
        "state": summary.state,
        "failure_reason": summary.failure_reason,
        "counters": {name: getattr(summary, name) for name in Counters.model_fields},
        "failure_rate": summary.failure_rate,
        "scores": summary.scores,
        "min_score": summary.min_score,
        "failures_by_class": summary.failures_by_class.model_dump(),
        "top_failures": [_failure_group(group) for group in summary.failures[:MAX_FAILURE_GROUPS]],
        "dashboard_url": summary.dashboard_url,
    }


def _failure_group(group: FailureGroup) -> dict[str, Any]:
    examples = [
        {
            "scenario": example.scenario_name,
            "agent": example.agent_name,
            "message": _short(example.message, MAX_MESSAGE_CHARS),
        }
        for example in group.examples
    ]
    return {
        "exception_type": group.exception_type,
        "failure_class": group.failure_class,
        "count": group.count,
        "examples": examples,
    }


def _job_name(notification: Notification) -> str | None:
    if notification.summary is not None:
        return notification.summary.job_name
    return notification.events[0].job_name if notification.events else None


def _short(text: str, max_chars: int) -> str:
    """One line, control characters removed, cut to `max_chars` (PagerDuty rejects longer fields)."""
    flat = " ".join(plain_text(text).split())
    return flat if len(flat) <= max_chars else flat[: max_chars - 1] + "…"
