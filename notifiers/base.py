"""What every notifier config has: its delivery limits, applied once by the delivery worker."""

from __future__ import annotations

import urllib.parse

from pydantic import Field, SecretStr, field_validator

from notifiers.http import http_url
from watcher.config.fields import DurationMs
from watcher.config.loader import StrictModel


class NotifierConfigBase(StrictModel):
    """Settings shared by every notifier type: how long to keep retrying, how many sends at once, how fast."""

    max_age_ms: DurationMs = Field(24 * 3_600_000, alias="max_age")
    concurrency: int = Field(4, ge=1, le=64)
    rate_per_s: float | None = Field(None, gt=0, description="at most this many sends per second; none: no limit")

    def destination(self) -> str:
        """Where it sends, for `benchwatch check` — never including a secret."""
        raise NotImplementedError


class SecretWebhookConfig(NotifierConfigBase):
    """A chat tool's incoming webhook whose URL is the credential (Teams, Discord): checked to be http(s) without
    ever repeating it, and shown by its host only."""

    webhook_url: SecretStr
    timeout_ms: DurationMs = Field(10_000, alias="timeout", gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        return http_url(value)

    def webhook_host(self) -> str:
        """The URL's host, the only part that may be shown (its path and query hold the token)."""
        return urllib.parse.urlsplit(self.webhook_url.get_secret_value()).netloc
