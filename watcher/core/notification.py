"""The Notification: what rules decide and notifiers deliver — the only thing notifiers ever read."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict

from watcher.core.events import Event
from watcher.core.summary import JobSummary

Severity = Literal["info", "warning", "critical"]
Action = Literal["trigger", "resolve"]


class Notification(BaseModel):
    """One message to one notifier: the events it carries, rendered, with the job's summary at the time.

    `id` is stable and doubles as the idempotency key of every send (webhook-id); `dedup_key` names the incident
    it belongs to (PagerDuty), and `action` says whether it opens (`trigger`) or closes (`resolve`) it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    rule: str
    notifier: str
    severity: Severity
    action: Action = "trigger"
    group_key: str
    dedup_key: str
    created_ms: int
    title: str
    text: str
    events: tuple[Event, ...]
    summary: JobSummary | None = None

    @property
    def job_id(self) -> str | None:
        """The job of the first event, when the notification is about one job."""
        return self.events[0].job_id if self.events else None


def notification_id(rule: str, notifier: str, group_key: str, first_event_id: str, action: str = "trigger") -> str:
    """A stable id: the same rule, notifier, group and first event always give the same id."""
    raw = f"{rule}\x1f{notifier}\x1f{group_key}\x1f{first_event_id}\x1f{action}"
    return "nt_" + hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()
