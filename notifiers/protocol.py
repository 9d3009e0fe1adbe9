"""The one protocol every notifier implements, and the classified errors a send may raise.

A notifier knows HOW to send one `Notification` to one destination, nothing else: retries, rate limits,
dead letters and bookkeeping live once, in the delivery worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from watcher.core.failures import Reason, classify_status, parse_retry_after
from watcher.core.notification import Notification


class SendError(Exception):
    """A send failed. `reason` is short and machine-readable (it labels metrics); the message is one line,
    never containing a secret."""

    retryable: bool = False

    def __init__(self, message: str, *, reason: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.http_status = http_status  # the HTTP status the destination answered with, when it answered one


class RetryableSendError(SendError):
    """Trying again later may work (429, 5xx, timeouts, connection errors); `retry_after_s` if the server said."""

    retryable = True

    def __init__(
        self, message: str, *, reason: str, retry_after_s: float | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(message, reason=reason, http_status=http_status)
        self.retry_after_s = retry_after_s


class PermanentSendError(SendError):
    """Trying again will not help (4xx, bad auth, a rejected payload): the notification is dead-lettered."""


class NotifierGoneError(PermanentSendError):
    """The destination says it is gone for good (HTTP 410): the notifier is disabled, loudly."""


class StateRows(Protocol):
    """Small durable key → value state a notifier may keep (e.g. Slack thread ids), backed by the store."""

    async def get(self, key: str) -> str | None:
        """The stored value, or None."""
        ...

    async def put(self, key: str, value: str) -> None:
        """Store a value durably."""
        ...

    async def rows(self) -> dict[str, str]:
        """Every stored key and its value."""
        ...

    async def delete(self, key: str) -> None:
        """Forget a key (nothing happens if it is not stored)."""
        ...


@dataclass(frozen=True)
class NotifierContext:
    """What a notifier may use: the process's shared HTTP session, its own durable state, the status page's address
    (`status_url`, for links back) and which rules' incidents a resolution closes (`incident_rules`: the rules that
    some rule `resolves:`) — an incident of any other rule never ends by itself."""

    session: aiohttp.ClientSession
    state: StateRows
    status_url: str = ""
    incident_rules: frozenset[str] = frozenset()


class Notifier(Protocol):
    """Sends notifications to one configured destination."""

    name: str

    async def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise a `SendError` saying whether to try again."""
        ...


def error_for_status(status: int, what: str, *, headers: Mapping[str, str], now_ms: int) -> SendError:
    """The classified error for a non-2xx HTTP status (the one shared classification: watcher.failures).

    `what` names the exchange (e.g. "webhook POST example.com") and must hold no secret.
    """
    reason, retryable = classify_status(status)
    message = f"{what}: HTTP {status}"
    if status == 410:
        gone = f"{message} (gone: the notifier is disabled)"
        return NotifierGoneError(gone, reason=Reason.CLIENT_ERROR, http_status=status)
    if retryable:
        retry_after = parse_retry_after(headers, now_ms)
        return RetryableSendError(message, reason=reason, retry_after_s=retry_after, http_status=status)
    return PermanentSendError(message, reason=reason, http_status=status)
