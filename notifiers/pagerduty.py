"""The PagerDuty notifier: Events API v2 — trigger with the rule's dedup key, resolve when a rule resolves."""

from __future__ import annotations

import urllib.parse
from typing import Literal

from pydantic import SecretStr

from notifiers.base import NotifierConfigBase

EVENTS_API_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyConfig(NotifierConfigBase):
    """`type: pagerduty`: the integration's `routing_key`; `url` for a proxy or a test server."""

    type: Literal["pagerduty"]
    routing_key: SecretStr
    url: str = EVENTS_API_URL

    def destination(self) -> str:
        """Where it sends."""
        return f"Events API v2 at {urllib.parse.urlsplit(self.url).netloc}"
