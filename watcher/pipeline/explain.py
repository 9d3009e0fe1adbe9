"""Why was this sent, or not? An event's decisions, rule by rule, as routing recorded them — with, for what was
sent, where its delivery stands. One code path for `benchwatch explain`, `replay --explain` and the status page.

What is explained is what was recorded when it happened (the decisions committed with the event), never a re-run
with today's config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from watcher.core.decisions import Decision, Verdict, describe, when
from watcher.core.eventlines import event_line
from watcher.core.events import Event
from watcher.core.records import DeliveryAttempt, OutboxItem
from watcher.store.protocol import Store


@dataclass(frozen=True, slots=True)
class Delivery:
    """A notification an event went out in, and where its delivery stands."""

    item: OutboxItem
    attempts: tuple[DeliveryAttempt, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """One event and every decision taken about it, by rule in the order they were first decided."""

    event: Event
    rules: tuple[tuple[str, tuple[Decision, ...]], ...]
    deliveries: Mapping[str, Delivery] = field(default_factory=dict)  # by notification id (a dry run has none)

    def final(self, rule: str) -> Decision | None:
        """The latest decision about the event for `rule`."""
        decided = dict(self.rules).get(rule, ())
        return decided[-1] if decided else None


class NotFound(LookupError):
    """No event or notification has that id (or the prefix is ambiguous)."""


def explanation(
    event: Event, decisions: Iterable[Decision], deliveries: Mapping[str, Delivery] | None = None
) -> Explanation:
    """The decisions of one event, grouped by rule (a rule's in the order they were taken)."""
    by_rule: dict[str, list[Decision]] = {}
    for decision in decisions:
        by_rule.setdefault(decision.rule, []).append(decision)
    rules = tuple((rule, tuple(decided)) for rule, decided in by_rule.items())
    return Explanation(event, rules, deliveries or {})


async def explain_event(store: Store, event_id: str) -> Explanation:
    """An event's recorded decisions, with the delivery of each notification it went out in; raises NotFound."""
    stored = await store.event(event_id)
    if stored is None:
        raise NotFound(event_id)
    decisions = await store.decisions(stored.event.id)
    deliveries: dict[str, Delivery] = {}
    for decision in decisions:
        for _, notification_id in decision.sent_to:
            if notification_id not in deliveries:
                item = await store.outbox_item(notification_id)
                if item is not None:
                    deliveries[notification_id] = Delivery(item, tuple(await store.deliveries(notification_id)))
    return explanation(stored.event, decisions, deliveries)


async def explain_notification(store: Store, notification_id: str) -> list[Explanation]:
    """Each event of a notification, explained; raises NotFound."""
    item = await store.outbox_item(notification_id)
    if item is None:
        raise NotFound(notification_id)
    return [await explain_event(store, event.id) for event in item.notification.events]


async def explain_id(store: Store, some_id: str) -> list[Explanation]:
    """An event id (`ev_…`) or a notification id (`nt_…`), or a unique prefix of one, explained."""
    if some_id.startswith("nt_"):
        return await explain_notification(store, some_id)
    return [await explain_event(store, some_id)]


# -- as text --------------------------------------------------------------------------------------------------


def explanation_text(explained: Explanation) -> list[str]:
    """The explanation as lines for a terminal: the event, then each rule and what was decided, and why."""
    event = explained.event
    lines = [f"{event.id} {event.kind} at {when(event.at_ms)}: {event_line(event)}"]
    not_listening = []
    for rule, decided in explained.rules:
        if len(decided) == 1 and decided[0].verdict == Verdict.NOT_MATCHED and decided[0].by == "on":
            not_listening.append(rule)
            continue
        if len(decided) == 1:
            lines.append(f"  {rule}: {_line(decided[0], explained.deliveries)}")
            continue
        lines.append(f"  {rule}:")
        lines.extend(f"    {when(d.at_ms)} {_line(d, explained.deliveries)}" for d in decided)
    if not explained.rules:
        lines.append("  no decisions recorded (no rules routed it: recorded by a watcher without a config's rules?)")
    if not_listening:
        lines.append(f"  not listening for {event.kind} (on:): {', '.join(not_listening)}")
    return lines


def _line(decision: Decision, deliveries: Mapping[str, Delivery]) -> str:
    text = describe(decision)
    for notifier, notification_id in decision.sent_to:
        delivery = deliveries.get(notification_id)
        if delivery is not None:
            text += f"; {notifier}: {delivery_text(delivery)}"
    return text


def delivery_text(delivery: Delivery) -> str:
    """`sent after 2 attempts`, `dead after 3 attempts: client_error: HTTP 400`, `pending (1 attempt)`."""
    item = delivery.item
    attempts = f"{item.attempts} attempt{'' if item.attempts == 1 else 's'}"
    interrupted = sum(1 for attempt in delivery.attempts if attempt.outcome == "interrupted")
    extra = f", {interrupted} interrupted" if interrupted else ""
    if item.status == "pending":
        return f"pending ({attempts}{extra})"
    error = f": {item.last_reason}: {item.last_error}" if item.status == "dead" and item.last_error else ""
    return f"{item.status} after {attempts}{extra}{error}"


# -- as JSON --------------------------------------------------------------------------------------------------


def explanation_json(explained: Explanation) -> dict[str, Any]:
    """The explanation for tools: the event, each rule's decisions (each with its `text`), the deliveries."""
    return {
        "event": explained.event.model_dump(mode="json"),
        "line": event_line(explained.event),
        "rules": [
            {"rule": rule, "decisions": [{**d.to_json(), "text": describe(d)} for d in decided]}
            for rule, decided in explained.rules
        ],
        "notifications": [_delivery_json(delivery) for delivery in explained.deliveries.values()],
    }


def _delivery_json(delivery: Delivery) -> dict[str, Any]:
    item = delivery.item
    return {
        "id": item.notification.id,
        "notifier": item.notification.notifier,
        "rule": item.notification.rule,
        "status": item.status.value,
        "text": delivery_text(delivery),
        "attempts": [attempt_json(attempt) for attempt in delivery.attempts],
    }


def attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    """One delivery attempt for tools and the status page."""
    return {
        "attempt": attempt.attempt,
        "started_ms": attempt.started_ms,
        "finished_ms": attempt.finished_ms,
        "outcome": attempt.outcome.value,
        "reason": attempt.reason,
        "error": attempt.error,
        "http_status": attempt.http_status,
    }


def explained_events(events: Sequence[Event], decisions: Sequence[Decision]) -> list[Explanation]:
    """A dry run's explanations: each event (in order) with the decisions taken about it."""
    by_id: dict[str, list[Decision]] = {event.id: [] for event in events}
    for decision in decisions:
        by_id.setdefault(decision.event_id, []).append(decision)
    return [explanation(event, by_id[event.id]) for event in events]
