"""The Apprise notifier: one notifier for the 100+ services Apprise speaks (ntfy, Telegram, Matrix, Mattermost,
Gotify, ...), each sent the title and text in the format it takes — Markdown where it takes Markdown or HTML (Apprise
turns it into HTML), plain text elsewhere.

Apprise is synchronous (requests): each URL is sent from a worker thread (`asyncio.to_thread`) under the notifier's
`timeout`, and its outcome classified from Apprise's structured result. The URLs carry tokens, so they are secrets:
only their schemes are ever shown. The package is an optional extra (`benchwatch[apprise]`), imported only when an
apprise notifier is configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, Field, SecretStr, model_validator

from notifiers.base import NotifierConfigBase
from notifiers.escape import plain_text
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError, SendError, error_for_status
from watcher.config.fields import DurationMs
from watcher.core.clock import Clock, SystemClock
from watcher.core.failures import Reason
from watcher.core.notification import Notification

INSTALL_HINT: Final = "the apprise notifier needs the apprise package: pip install 'benchwatch[apprise]'"
GRACE_S: Final = 2.0  # past Apprise's own deadline, how long the worker thread is waited for
_SCHEME: Final = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]{0,30}")
_STATUS_IN_LOG: Final = re.compile(r"\berror=(\d{3})\b")  # Apprise's services log "...: Not Found, error=404."
_CONNECTION_IN_LOG: Final = re.compile(r"connection error", re.IGNORECASE)
_MARKDOWN_PUNCTUATION: Final = re.compile(r"([!-/:-@\[-`{-~])")  # CommonMark: every ASCII punctuation may be escaped
_QUIET_LOGGERS: Final = ("apprise", "urllib3", "requests_oauthlib")
_NOTIFY_TYPE: Final = {"info": "info", "warning": "warning", "critical": "failure"}


def apprise_module() -> ModuleType:
    """The apprise package, imported on first use; a `ValueError` saying how to install it when it is missing."""
    try:
        import apprise
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    # Apprise's log lines (and those of the HTTP libraries under it) name hosts, paths and sometimes tokens: they
    # stay out of ours. What failed is read from each call's captured log instead (only a status code or "connection
    # error" is taken from it). benchwatch's own HTTP is aiohttp, so nothing of ours is lost.
    for library in _QUIET_LOGGERS:
        logging.getLogger(library).propagate = False
    return apprise


def scheme_of(url: str) -> str:
    """What may be shown of an Apprise URL: its scheme, e.g. `ntfys://`."""
    scheme, separator, _ = url.partition("://")
    return f"{scheme}://" if separator and _SCHEME.fullmatch(scheme) else "(a URL without a scheme)"


def _understood(url: SecretStr) -> SecretStr:
    """An Apprise URL that Apprise can load (each is checked at load, so a typo is a config error, not a dead
    letter); the error shows its scheme only."""
    raw = url.get_secret_value()
    if apprise_module().Apprise.instantiate(raw) is None:
        raise ValueError(f"Apprise does not understand this {scheme_of(raw)} URL")
    return url


class AppriseConfig(NotifierConfigBase):
    """`type: apprise`: `urls`, one Apprise URL per service (secrets: shown by their scheme only), and `timeout`."""

    type: Literal["apprise"]
    urls: list[Annotated[SecretStr, AfterValidator(_understood)]] = Field(min_length=1)
    timeout_ms: DurationMs = Field(30_000, alias="timeout", gt=0)

    @model_validator(mode="before")
    @classmethod
    def _installed(cls, data: Any) -> Any:
        apprise_module()  # once for the notifier, before its URLs are checked one by one
        return data

    def destination(self) -> str:
        """Where it sends: the services' schemes, never the URLs."""
        return "Apprise: " + ", ".join(scheme_of(url.get_secret_value()) for url in self.urls)


@dataclass(frozen=True)
class _Target:
    """One URL: an Apprise object holding its one service, a label for messages and a digest for the state rows."""

    label: str
    digest: str
    apprise: Any
    service: Any


class AppriseNotifier:
    """Sends each notification to every URL; a retry goes only to the URLs that have not had it yet."""

    def __init__(self, name: str, config: AppriseConfig, context: NotifierContext, clock: Clock | None = None) -> None:
        self.name = name
        self._config = config
        self._state = context.state
        self._clock = clock or SystemClock()
        self._apprise = apprise_module()
        self._targets = [self._target(index, url.get_secret_value()) for index, url in enumerate(config.urls)]

    def __repr__(self) -> str:
        return f"AppriseNotifier(name={self.name!r}, services={[target.label for target in self._targets]!r})"

    def _target(self, index: int, url: str) -> _Target:
        service = self._apprise.Apprise.instantiate(url)
        bundle = self._apprise.Apprise()
        bundle.add(service)
        label = f"{scheme_of(url)} (urls[{index}])"
        return _Target(label, hashlib.blake2b(url.encode(), digest_size=8).hexdigest(), bundle, service)

    async def send(self, notification: Notification) -> None:
        """Send to every URL not yet sent to (an earlier attempt may have reached some); raise if any failed."""
        done = await self._delivered(notification.id)
        pending = [target for target in self._targets if target.digest not in done]
        outcomes = await asyncio.gather(*(self._send_one(target, notification) for target in pending))
        failures = [failure for failure in outcomes if failure is not None]
        reached = done | {target.digest for target, failure in zip(pending, outcomes, strict=True) if failure is None}
        if not failures:
            if done:
                await self._state.delete(notification.id)
            return
        if reached:
            await self._state.put(notification.id, json.dumps(sorted(reached)))
        raise combined(failures)

    async def _delivered(self, notification_id: str) -> set[str]:
        raw = await self._state.get(notification_id)
        return set(json.loads(raw)) if raw else set()

    async def _send_one(self, target: _Target, notification: Notification) -> SendError | None:
        what = f"apprise {target.label}"
        timeout_s = self._config.timeout_ms / 1000
        body_format, title, body = rendered(target.service, notification)
        notify_type = "success" if notification.action == "resolve" else _NOTIFY_TYPE[notification.severity]
        call = asyncio.to_thread(
            target.apprise.notify,
            body=body, title=title, notify_type=notify_type, body_format=body_format, timeout=timeout_s,
        )  # fmt: skip
        try:
            result = await asyncio.wait_for(call, timeout_s + GRACE_S)
        except TimeoutError:
            return RetryableSendError(f"{what}: no answer within {timeout_s:g} s", reason=Reason.TIMEOUT)
        except Exception as exc:  # Apprise refused the call itself: its message may quote the URL
            return RetryableSendError(f"{what}: Apprise failed ({type(exc).__name__})", reason=Reason.SERVER_ERROR)
        return classified(result, what, timeout_s, self._clock.now_ms())


def rendered(service: Any, notification: Notification) -> tuple[str, str, str]:
    """(body format, title, body) for one service: Markdown — escaped, with a dashboard link — where the service
    takes Markdown or HTML (Apprise converts it to HTML), else plain text."""
    title = " ".join(plain_text(notification.title).split()) or notification.rule
    dashboard = notification.summary.dashboard_url if notification.summary is not None else None
    if service.resolve_format(None) == "text":  # NotifyFormat is a str enum
        body = plain_text(notification.text) + (f"\n\nRunloop dashboard: {dashboard}" if dashboard else "")
        return "text", title, body
    body = markdown_text(notification.text) + (f"\n\n[Runloop dashboard]({_link(dashboard)})" if dashboard else "")
    # A service without a title field gets the title joined to the body, converted as the body is: escape it too.
    return "markdown", markdown_text(title) if service.title_maxlen <= 0 else title, body


def markdown_text(text: str) -> str:
    """Text shown as written in CommonMark: every ASCII punctuation character backslash-escaped (no emphasis,
    links, headings, lists, HTML), control characters removed."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", plain_text(text))


def classified(result: Any, what: str, timeout_s: float, now_ms: int) -> SendError | None:
    """None if the service took it; else the classified error, from Apprise's status and its captured log (only a
    status code or the words "connection error" are read from it: its text may name hosts and tokens)."""
    if result:
        return None
    if str(getattr(result.status, "name", "")) == "TIMEOUT":
        return RetryableSendError(f"{what}: no answer within {timeout_s:g} s", reason=Reason.TIMEOUT)
    messages = [entry.message for entry in result.logs()]
    statuses = [int(match.group(1)) for message in messages if (match := _STATUS_IN_LOG.search(message))]
    if statuses:
        if statuses[-1] == 410:  # one service gone disables that URL's sends, not the whole notifier
            return PermanentSendError(f"{what}: HTTP 410 (gone)", reason=Reason.CLIENT_ERROR)
        return error_for_status(statuses[-1], what, headers={}, now_ms=now_ms)
    if any(_CONNECTION_IN_LOG.search(message) for message in messages):
        return RetryableSendError(f"{what}: connection failed", reason=Reason.CONNECTION)
    return RetryableSendError(f"{what}: not delivered (Apprise gave no HTTP status)", reason=Reason.SERVER_ERROR)


def combined(failures: list[SendError]) -> SendError:
    """One error for the URLs that failed: retryable if any is (the others were sent and are not sent again)."""
    message = "; ".join(str(failure) for failure in failures)
    retryable = [failure for failure in failures if failure.retryable]
    if retryable:
        return RetryableSendError(message, reason=retryable[0].reason)
    return PermanentSendError(message, reason=failures[0].reason)


def _link(url: str) -> str:
    """A URL as a Markdown link destination: what would end it early is percent-encoded."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")
