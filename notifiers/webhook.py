"""The webhook notifier: JSON or CloudEvents over HTTP POST, signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from notifiers.base import NotifierConfigBase
from watcher.durations import DurationMs


class WebhookConfig(NotifierConfigBase):
    """`type: webhook`: `url`, an optional `whsec_` secret, extra `headers`, `format` json or cloudevents."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    format: Literal["json", "cloudevents"] = "json"
    timeout_ms: DurationMs = Field(10_000, alias="timeout")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("expected a Standard Webhooks secret: whsec_ followed by base64")
        try:
            base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError("the part after whsec_ is not valid base64") from None
        return value

    def destination(self) -> str:
        """Where it sends (no query string: it may hold a token)."""
        parts = urllib.parse.urlsplit(self.url)
        signed = ", signed" if self.secret is not None else ""
        return f"POST {parts.scheme}://{parts.netloc}{parts.path} ({self.format}{signed})"
