"""What both backends share of their SQL: rows read back into records, and the events query (in either driver's
placeholder style: `?` for sqlite3, `%s` for psycopg)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from watcher.core.decisions import Decision, by_event, decisions_body
from watcher.core.notification import Notification
from watcher.core.records import DeliveryAttempt, DeliveryOutcome, LoggedDelivery, OutboxItem, OutboxStatus

MIN_PREFIX_CHARS = 6  # an id's prefix this long or longer finds it, when no other id starts the same
OUTBOX_COLUMNS = "body, status, attempts, next_attempt_ms, last_reason, last_error, done_ms"
DELIVERY_COLUMNS = "notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason, error, http_status"
LOG_STATUSES = ("pending", "sent", "dead", "interrupted")


def read_outbox_item(row: Sequence[Any]) -> OutboxItem:
    """A row of OUTBOX_COLUMNS as the record."""
    body, status, attempts, next_attempt_ms, last_reason, last_error, done_ms = row
    return OutboxItem(
        notification=Notification.model_validate_json(body),
        status=OutboxStatus(status),
        attempts=attempts,
        next_attempt_ms=next_attempt_ms,
        last_reason=last_reason,
        last_error=last_error,
        done_ms=done_ms,
    )


def read_delivery_attempt(row: Sequence[Any]) -> DeliveryAttempt:
    """A row of the deliveries table (in its column order, `http_status` last) as the record."""
    notification_id, notifier, attempt, started_ms, finished_ms, outcome, reason, error, http_status = row
    return DeliveryAttempt(
        notification_id,
        notifier,
        attempt,
        started_ms,
        finished_ms,
        DeliveryOutcome(outcome),
        reason,
        error,
        http_status,
    )


def events_query(
    mark: str, *, job_id: str | None, since_seq: int, limit: int, kind: str | None, newest_first: bool
) -> tuple[str, list[object]]:
    """`SELECT seq, body FROM events` after `since_seq`, optionally of one job and one kind, in recording order
    (or newest first); `mark` is the driver's placeholder."""
    query = f"SELECT seq, body FROM events WHERE seq > {mark}"
    params: list[object] = [since_seq]
    if job_id is not None:
        query += f" AND job_id = {mark}"
        params.append(job_id)
    if kind is not None:
        query += f" AND kind = {mark}"
        params.append(kind)
    query += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT {mark}"
    params.append(limit)
    return query, params


def decision_rows(decisions: Sequence[Decision]) -> list[tuple[str, int, str]]:
    """`(event_id, at_ms, body)` rows of the decisions table: one per event, its decisions in order."""
    return [(event_id, decided[0].at_ms, decisions_body(decided)) for event_id, decided in by_event(decisions).items()]


def delivery_log_query(
    mark: str, *, job_id: str | None, rule: str | None, notifier: str | None, status: str | None, limit: int
) -> tuple[str, list[object]]:
    """`SELECT OUTBOX_COLUMNS FROM outbox`, newest first, filtered; `status` is one of LOG_STATUSES
    (`interrupted`: a notification with an interrupted attempt, whatever its status now)."""
    where: list[str] = []
    params: list[object] = []
    for column, value in (("job_id", job_id), ("rule", rule), ("notifier", notifier)):
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    if status == "interrupted":
        where.append("id IN (SELECT notification_id FROM deliveries WHERE outcome = 'interrupted')")
    elif status is not None:
        where.append(f"status = {mark}")
        params.append(status)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return f"SELECT {OUTBOX_COLUMNS} FROM outbox{condition} ORDER BY created_ms DESC, id DESC LIMIT {mark}", [
        *params,
        limit,
    ]


def logged_deliveries(items: Sequence[OutboxItem], attempts: Sequence[DeliveryAttempt]) -> list[LoggedDelivery]:
    """Each item with its attempts (given in the order they were made)."""
    by_id: dict[str, list[DeliveryAttempt]] = {item.notification.id: [] for item in items}
    for attempt in attempts:
        by_id[attempt.notification_id].append(attempt)
    return [LoggedDelivery(item, tuple(by_id[item.notification.id])) for item in items]
