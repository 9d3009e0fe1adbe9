"""The durable records every package speaks: outbox items, delivery attempts, opaque state rows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from watcher.core.notification import Notification


class OutboxStatus(StrEnum):
    """Where a notification's delivery stands."""

    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class DeliveryOutcome(StrEnum):
    """How one attempt at sending ended."""

    SENT = "sent"
    RETRY = "retry"
    DEAD = "dead"
    # Recorded by the replica that took over a claim that had expired (its holder died or stalled mid-send): that
    # send may have arrived, so the notification may arrive twice.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class StateRow:
    """A row of another package's durable state (rule timers, Slack threads): opaque JSON under a key.

    `body` None deletes the row. The store keeps these without knowing what they mean.
    """

    namespace: str
    key: str
    body: str | None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification in the outbox and where its delivery stands."""

    notification: Notification
    status: OutboxStatus
    attempts: int
    next_attempt_ms: int
    last_reason: str | None
    last_error: str | None
    done_ms: int | None


@dataclass(frozen=True, slots=True)
class OutboxLook:
    """The outbox as a replica's heartbeat saw it, for its delivery worker (`DeliveryWorker.looked`): a look every
    heartbeat, in its round trip, instead of the worker's own transactions."""

    next_due_ms: int | None
    """When the first pending notification that this replica's worker may take falls due: one nobody claims, or
    whose claim expired (its replica died); None: none. Another replica's live claim is its own business."""
    claimed: frozenset[str]
    """The pending notifications this replica has claimed (its sends in flight, and any it has yet to start)."""


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    """One try at sending a notification, as recorded."""

    notification_id: str
    notifier: str
    attempt: int
    started_ms: int
    finished_ms: int
    outcome: DeliveryOutcome
    reason: str | None
    error: str | None
    http_status: int | None = None  # the receiver's answer when it refused (4xx, 5xx); None when it had none


@dataclass(frozen=True, slots=True)
class LoggedDelivery:
    """A notification in the delivery log: where it stands, and every attempt at sending it."""

    item: OutboxItem
    attempts: tuple[DeliveryAttempt, ...]

    @property
    def interrupted(self) -> int:
        """How many attempts a replica's death interrupted (the receiver may have had it that many times more)."""
        return sum(1 for attempt in self.attempts if attempt.outcome == DeliveryOutcome.INTERRUPTED)
