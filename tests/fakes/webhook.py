"""A fake webhook receiver that checks Standard Webhooks signatures itself and unwraps CloudEvents.

The check is written from the specification, independently of `notifiers.webhook`: a bug in our signing cannot be
mirrored by a bug in the fake.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

from tests.fakes.base import FakeServer, Recorded

CLOUDEVENT_REQUIRED = ("specversion", "id", "source", "type")


@dataclass(frozen=True)
class Delivery:
    """One request as a receiver sees it: whether its signature holds, and the benchwatch JSON it carries."""

    recorded: Recorded
    verified: bool | None  # None: the receiver has no secret, so nothing was checked
    webhook_id: str | None
    timestamp_s: int | None
    payload: dict[str, Any]  # the benchwatch JSON (a CloudEvent's `data`)
    cloudevent: dict[str, Any] | None  # the envelope, when the request is a structured-mode CloudEvent
    problems: tuple[str, ...]  # how the request breaks the CloudEvents spec, if it claims to be one


class WebhookReceiver(FakeServer):
    """Records deliveries and verifies each against `secret` (a `whsec_` string), as a real receiver would."""

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret

    @property
    def deliveries(self) -> list[Delivery]:
        """Every request so far, verified and parsed."""
        return [parse_delivery(recorded, self.secret) for recorded in self.requests]


def parse_delivery(recorded: Recorded, secret: str | None) -> Delivery:
    """Verify and unwrap one recorded request."""
    headers = {name.lower(): value for name, value in recorded.headers.items()}
    body = json.loads(recorded.body)
    cloudevent = body if headers.get("content-type", "").startswith("application/cloudevents+json") else None
    timestamp = headers.get("webhook-timestamp")
    return Delivery(
        recorded=recorded,
        verified=None if secret is None else verify(secret, headers, recorded.body),
        webhook_id=headers.get("webhook-id"),
        timestamp_s=int(timestamp) if timestamp and timestamp.isdigit() else None,
        payload=cloudevent["data"] if cloudevent is not None else body,
        cloudevent=cloudevent,
        problems=cloudevent_problems(cloudevent) if cloudevent is not None else (),
    )


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks: any `v1,<base64>` in `webhook-signature` equals HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    message_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
    if not message_id or not timestamp:
        return False
    key = base64.b64decode(secret[len("whsec_") :])
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    offered = headers.get("webhook-signature", "").split()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (entry.partition(",") for entry in offered)
    )


def cloudevent_problems(event: dict[str, Any]) -> tuple[str, ...]:
    """What a structured-mode CloudEvents 1.0 event lacks or gets wrong (empty when it is valid)."""
    problems = [f"missing {name}" for name in CLOUDEVENT_REQUIRED if not event.get(name)]
    if event.get("specversion") not in (None, "1.0"):
        problems.append(f"specversion {event['specversion']!r} is not 1.0")
    if "data" in event and "data_base64" in event:
        problems.append("both data and data_base64")
    return tuple(problems)
