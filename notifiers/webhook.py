"""The webhook notifier: JSON, CloudEvents or a templated body over HTTP POST, signed the Standard Webhooks way."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import urllib.parse
from typing import Any, Final, Literal

import jinja2
from multidict import CIMultiDict
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

from notifiers.base import NotifierConfigBase
from notifiers.body_template import compile_body, render_body
from notifiers.http import location, rfc3339
from notifiers.jsonhook import JsonWebhookNotifier
from watcher.config.fields import DurationMs
from watcher.core.notification import Notification

# `type/subtype` and `; name=value` parameters, nothing else: the value becomes a header.
_MEDIA_TYPE: Final = re.compile(r"[\w.+-]+/[\w.+-]+(\s*;\s*[\w.+-]+=[\w.+\-\"]+)*")
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP header name (RFC 9110 token)


class WebhookConfig(NotifierConfigBase):
    """`type: webhook`: `url`, an optional `whsec_` secret, extra `headers`, `format` json, cloudevents or
    template (a Jinja2 `body` sent as `content_type`)."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    format: Literal["json", "cloudevents", "template"] = "json"
    body: str | None = None
    content_type: str = "application/json"
    timeout_ms: DurationMs = Field(10_000, alias="timeout", gt=0)
    _body_template: jinja2.Template | None = PrivateAttr(None)

    @field_validator("body")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_body(value)
        return value

    @field_validator("content_type")
    @classmethod
    def _media_type(cls, value: str) -> str:
        if not _MEDIA_TYPE.fullmatch(value):
            raise ValueError(f"expected a media type such as application/json or text/plain, got {value!r}")
        return value

    @model_validator(mode="after")
    def _body_with_template(self) -> WebhookConfig:
        if (self.format == "template") != (self.body is not None):
            raise ValueError("format: template needs a body, and a body needs format: template")
        if "content_type" in self.model_fields_set and self.format != "template":
            raise ValueError("content_type is for format: template (json and cloudevents set their own)")
        if self.body is not None:
            self._body_template = compile_body(self.body)
        return self

    def body_template(self) -> jinja2.Template | None:
        """The compiled `body` (with `format: template`)."""
        return self._body_template

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names_and_values(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # A CR or LF would let a header write headers (or a body) of its own. Values are secrets: never echoed.
        for name, secret in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"invalid header name {name[:80]!r}: letters, digits and !#$%&'*+-.^_`|~ only")
            if any(char in secret.get_secret_value() for char in "\r\n\0"):
                raise ValueError(f"the value of header {name!r} holds a line break or NUL")
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
        signed = ", signed" if self.secret is not None else ""
        return f"POST {urllib.parse.urlsplit(self.url).scheme}://{location(self.url)} ({self.format}{signed})"


CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json"


class WebhookNotifier(JsonWebhookNotifier[WebhookConfig]):
    """POSTs each notification as JSON, a CloudEvent or a templated body, signed the Standard Webhooks way when
    given a secret."""

    def describe(self) -> str:
        """The URL without its query string (it may hold a token)."""
        return f"webhook POST {location(self._config.url)}"

    def shown(self) -> str:
        """The address (without its query string) and the body's format."""
        return f"url={location(self._config.url)!r}, format={self._config.format!r}"

    def url(self) -> str:
        """The configured URL."""
        return self._config.url

    def document(self, notification: Notification) -> dict[str, Any]:
        """The notification as JSON, or wrapped as a CloudEvent."""
        return request_body(notification, "cloudevents" if self._config.format == "cloudevents" else "json")

    def body(self, notification: Notification) -> bytes:
        """The document, or with `format: template` the rendered `body`."""
        template = self._config.body_template()
        if template is None:
            return super().body(notification)
        return render_body(template, notification_json(notification), self._config.content_type, self._what)

    def headers(self, notification: Notification, body: bytes) -> CIMultiDict[str]:
        """The configured headers, then ours (content type, signature), which win over a configured one of the
        same name: a stray header must not break the signature."""
        headers: CIMultiDict[str] = CIMultiDict(
            (name, value.get_secret_value()) for name, value in self._config.headers.items()
        )
        headers.update(self._own_headers(notification.id, body))
        return headers

    def _own_headers(self, message_id: str, body: bytes) -> dict[str, str]:
        content_type = {"cloudevents": CLOUDEVENTS_CONTENT_TYPE, "template": self._config.content_type}.get(
            self._config.format, "application/json"
        )
        headers = {"Content-Type": content_type, "User-Agent": "benchwatch"}
        if self._config.secret is not None:
            timestamp_s = self._clock.now_ms() // 1000
            signature = sign(self._config.secret.get_secret_value(), message_id, timestamp_s, body)
            # webhook-id is the notification id on every attempt: receivers deduplicate retries on it.
            headers |= {"webhook-id": message_id, "webhook-timestamp": str(timestamp_s), "webhook-signature": signature}
        return headers


def request_body(notification: Notification, body_format: Literal["json", "cloudevents"]) -> dict[str, Any]:
    """The JSON object to send: the notification itself, or wrapped as a CloudEvents 1.0 structured event."""
    data = notification_json(notification)
    return cloudevent(notification, data) if body_format == "cloudevents" else data


def notification_json(notification: Notification) -> dict[str, Any]:
    """The notification as plain JSON: envelope first, then title, text, events and the job summary."""
    return {
        "id": notification.id,
        "rule": notification.rule,
        "notifier": notification.notifier,
        "severity": notification.severity,
        "action": notification.action,
        "dedup_key": notification.dedup_key,
        "group_key": notification.group_key,
        "job_id": notification.job_id,
        "created_ms": notification.created_ms,
        "title": notification.title,
        "text": notification.text,
        "events": [event.model_dump(mode="json") for event in notification.events],
        "summary": notification.summary.model_dump(mode="json") if notification.summary is not None else None,
    }


def cloudevent(notification: Notification, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 event in structured mode, carrying `data`; `subject` is the job when there is one."""
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": notification.id,
        # `source` is a URI reference: a rule name may hold anything, so it is one quoted path segment.
        "source": f"benchwatch/{urllib.parse.quote(notification.rule, safe='')}",
        "type": "benchwatch.notification",
        "time": rfc3339(notification.created_ms),
        "datacontenttype": "application/json",
    }
    if notification.job_id:  # the spec forbids an empty subject: watcher.* events are about no job
        event["subject"] = notification.job_id
    event["data"] = data
    return event


def sign(secret: str, message_id: str, timestamp_s: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature`: v1, base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp_s}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()
