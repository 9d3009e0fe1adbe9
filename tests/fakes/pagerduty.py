"""A fake PagerDuty Events API v2: validates events as the real one does and tracks incidents by dedup key."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.base import FakeServer, Recorded, Reply

SEVERITIES = ("critical", "error", "warning", "info")
ACTIONS = ("trigger", "acknowledge", "resolve")
MAX_SUMMARY_CHARS = 1024


@dataclass
class Incident:
    """An incident as PagerDuty would keep it: its status and the events it received."""

    dedup_key: str
    status: str  # "triggered" or "resolved"
    events: list[dict[str, Any]] = field(default_factory=list)


class FakePagerDuty(FakeServer):
    """Answers 202 `{"status": "success", "dedup_key": ...}` to valid events, 400 with `errors` otherwise."""

    def __init__(self) -> None:
        super().__init__()
        self.incidents: dict[str, Incident] = {}

    def answer(self, recorded: Recorded) -> Reply:
        """Validate the event, then open, update or close its incident."""
        try:
            event = json.loads(recorded.body)
        except ValueError:
            return _invalid(["Request body is not valid JSON"])
        errors = event_errors(event) if isinstance(event, dict) else ["Event must be a JSON object"]
        if errors:
            return _invalid(errors)
        key = event.get("dedup_key") or uuid.uuid4().hex
        self._apply(key, event)
        return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": key})

    def _apply(self, key: str, event: dict[str, Any]) -> None:
        incident = self.incidents.get(key)
        if event["event_action"] == "trigger":
            if incident is None or incident.status == "resolved":
                incident = self.incidents[key] = Incident(key, "triggered")
        elif event["event_action"] == "resolve" and incident is not None:
            incident.status = "resolved"
        if incident is not None:
            incident.events.append(event)


def event_errors(event: dict[str, Any]) -> list[str]:
    """Why the Events API would refuse this event (empty when it would accept it)."""
    errors = []
    if not event.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors.extend(_payload_errors(event.get("payload")))
    return errors


def _payload_errors(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = [f"'payload.{name}' is missing or blank" for name in ("summary", "source") if not payload.get(name)]
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    if len(str(payload.get("summary", ""))) > MAX_SUMMARY_CHARS:
        errors.append(f"'payload.summary' is longer than {MAX_SUMMARY_CHARS} characters")
    return errors


def _invalid(errors: list[str]) -> Reply:
    return Reply(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})
