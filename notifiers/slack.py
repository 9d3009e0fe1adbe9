"""The Slack notifier: an incoming webhook, or a bot token and channel through the Web API (threads per job)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import re
import urllib.parse
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Self

import aiohttp
from pydantic import Field, SecretStr, model_validator
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifiers.base import NotifierConfigBase
from notifiers.protocol import (
    NotifierContext,
    PermanentSendError,
    RetryableSendError,
    SendError,
    error_for_status,
)
from notifiers.slack_blocks import Block, message_blocks, message_text, root_blocks, root_text
from watcher.core.clock import Clock, SystemClock
from watcher.core.failures import Reason, parse_retry_after
from watcher.core.notification import Notification


class SlackConfig(NotifierConfigBase):
    """`type: slack`: give `webhook_url`, or `token` and `channel`; `thread` keeps one root message per job."""

    type: Literal["slack"]
    webhook_url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api/"
    thread: bool = True
    rate_per_s: float | None = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _one_way_in(self) -> Self:
        if self.webhook_url is None and self.token is None:
            raise ValueError("give webhook_url, or token and channel")
        if self.webhook_url is not None and self.token is not None:
            raise ValueError("give webhook_url or token, not both")
        if self.token is not None and not self.channel:
            raise ValueError("a token needs a channel")
        return self

    def destination(self) -> str:
        """Where it sends (the webhook URL is a secret: only its host is shown)."""
        if self.webhook_url is not None:
            host = urllib.parse.urlsplit(self.webhook_url.get_secret_value()).netloc
            return f"incoming webhook at {host}"
        thread = ", threaded per job" if self.thread else ""
        return f"channel {self.channel} via {self.base_url}{thread}"


# slack-sdk logs request URLs and bodies at DEBUG whenever its logger's own level is unset; an incoming webhook's URL
# is its secret, so the clients get a logger that never takes that branch.
_SDK_LOGGER = logging.getLogger(f"{__name__}.sdk")
_SDK_LOGGER.setLevel(logging.WARNING)

REQUEST_TIMEOUT_S: Final = 30.0
"""Per Slack call. slack-sdk's own `timeout` only applies to sessions it creates, never to the shared one."""

_RATE_LIMITED: Final = frozenset({"ratelimited", "rate_limited"})
_AUTH: Final = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "not_allowed_token_type",
        "no_permission",
        "ekm_access_denied",
        "team_access_not_granted",
    }
)
_SERVER: Final = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# chat.update answers these when the root can no longer be edited: a new root is posted instead.
_ROOT_LOST: Final = frozenset({"message_not_found", "cant_update_message", "edit_window_closed"})
_ERROR_CODE = re.compile(r"[a-z0-9_.]{1,64}")


class SlackNotifier:
    """Posts Block Kit messages to an incoming webhook, or with a bot token to a channel, one thread per job."""

    def __init__(
        self,
        name: str,
        config: SlackConfig,
        context: NotifierContext,
        clock: Clock | None = None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._config = config
        self._channel = config.channel or ""
        self._state = context.state
        self._clock = clock or SystemClock()
        self._timeout_s = timeout_s
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._web: AsyncWebClient | None = None
        self._webhook: AsyncWebhookClient | None = None
        # Retries are the delivery worker's: slack-sdk's own retry handlers are switched off.
        if config.webhook_url is not None:
            url = config.webhook_url.get_secret_value()
            self._webhook = AsyncWebhookClient(url=url, session=context.session, logger=_SDK_LOGGER, retry_handlers=[])
        elif config.token is not None:
            self._web = AsyncWebClient(
                token=config.token.get_secret_value(),
                base_url=config.base_url,
                session=context.session,
                logger=_SDK_LOGGER,
                retry_handlers=[],
            )

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self.name!r}, destination={self._config.destination()!r})"

    async def send(self, notification: Notification) -> None:
        """Post one notification: into its job's thread when threading, else as a message of its own."""
        blocks, text = message_blocks(notification), message_text(notification)
        if self._webhook is not None:
            await self._post_webhook(self._webhook, blocks, text)
        elif self._config.thread and notification.job_id is not None:
            await self._post_threaded(notification, notification.job_id, blocks, text)
        else:
            await self._post_message(self._channel, blocks, text)

    async def _post_webhook(self, webhook: AsyncWebhookClient, blocks: list[Block], text: str) -> None:
        what = f"Slack {self._config.destination()}"
        async with self._classified(what):
            response = await webhook.send(text=text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        if not 200 <= response.status_code < 300:
            code = error_code(response.body)
            described = f"{what} ({code})" if code else what
            raise error_for_status(response.status_code, described, headers=response.headers, now_ms=self._now_ms())

    async def _post_threaded(self, notification: Notification, job_id: str, blocks: list[Block], text: str) -> None:
        """Reply in the job's thread; one lock per thread, so concurrent sends create a single root."""
        key = f"{self._channel}\x1f{job_id}"
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            root = await self._current_root(key, notification)
            await self._post_message(root.channel, blocks, text, thread_ts=root.ts)

    async def _current_root(self, key: str, notification: Notification) -> ThreadRoot:
        """The job's root, brought up to date; posted and remembered when there is none or it can't be edited."""
        root = ThreadRoot.from_json(await self._state.get(key))
        if root is not None and notification.created_ms < root.updated_ms:
            # A retried older notification must not roll the root back to stale progress.
            return root
        if root is not None and await self._update_root(root, notification):
            root = dataclasses.replace(root, updated_ms=notification.created_ms)
        else:
            root = await self._post_root(notification)
        await self._state.put(key, root.to_json())
        return root

    async def _post_root(self, notification: Notification) -> ThreadRoot:
        response = await self._post_message(self._channel, root_blocks(notification), root_text(notification))
        channel, ts = response.get("channel"), response.get("ts")
        if not isinstance(channel, str) or not isinstance(ts, str):
            raise RetryableSendError(
                "Slack chat.postMessage: answer without channel and ts", reason=Reason.BAD_RESPONSE
            )
        return ThreadRoot(channel=channel, ts=ts, updated_ms=notification.created_ms)

    async def _update_root(self, root: ThreadRoot, notification: Notification) -> bool:
        """Edit the root in place; False when Slack says it can no longer be edited (deleted, say)."""
        web = self._web_client()
        async with self._classified("Slack chat.update"):
            try:
                await web.chat_update(
                    channel=root.channel, ts=root.ts, blocks=root_blocks(notification), text=root_text(notification)
                )
            except SlackApiError as exc:
                if error_code(exc.response.data) in _ROOT_LOST:
                    return False
                raise
        return True

    async def _post_message(
        self, channel: str, blocks: list[Block], text: str, *, thread_ts: str | None = None
    ) -> AsyncSlackResponse:
        web = self._web_client()
        async with self._classified("Slack chat.postMessage"):
            response = await web.chat_postMessage(
                channel=channel, blocks=blocks, text=text, thread_ts=thread_ts, unfurl_links=False, unfurl_media=False
            )
        return response

    def _web_client(self) -> AsyncWebClient:
        if self._web is None:
            raise PermanentSendError("Slack: no token configured", reason=Reason.CLIENT_ERROR)
        return self._web

    def _now_ms(self) -> int:
        return self._clock.now_ms()

    @contextlib.asynccontextmanager
    async def _classified(self, what: str) -> AsyncIterator[None]:
        """Bound the call in time and turn whatever slack-sdk or aiohttp raises into a classified `SendError`."""
        try:
            async with asyncio.timeout(self._timeout_s):
                yield
        except SlackApiError as exc:
            response = exc.response
            raise api_error(what, response.status_code, response.headers, response.data, self._now_ms()) from None
        except TimeoutError:
            raise RetryableSendError(f"{what}: no answer within {self._timeout_s:g} s", reason=Reason.TIMEOUT) from None
        except (aiohttp.ClientError, SlackClientError) as exc:
            # Only the type is kept: the exception's own text may hold the webhook URL.
            raise transport_error(what, exc) from None


@dataclass(frozen=True)
class ThreadRoot:
    """A job's root message, as Slack identifies it (channel id and ts), and the time of the state it shows."""

    channel: str
    ts: str
    updated_ms: int = 0

    def to_json(self) -> str:
        """The durable form, kept in the notifier's state."""
        return json.dumps({"channel": self.channel, "ts": self.ts, "updated_ms": self.updated_ms})

    @classmethod
    def from_json(cls, raw: str | None) -> ThreadRoot | None:
        """Parse the durable form; None when absent or unreadable (a new root is posted then)."""
        if raw is None:
            return None
        try:
            value = json.loads(raw)
            return cls(channel=value["channel"], ts=value["ts"], updated_ms=int(value.get("updated_ms", 0)))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def error_code(body: object) -> str | None:
    """Slack's error code from a Web API JSON body or a webhook text body; None unless it looks like one."""
    code = body.get("error") if isinstance(body, dict) else body
    if isinstance(code, str) and _ERROR_CODE.fullmatch(code.strip()):
        return code.strip()
    return None


def api_error(what: str, status: int, headers: Mapping[str, str], body: object, now_ms: int) -> SendError:
    """The classified error for a failed Web API call: by HTTP status for 429 and 5xx, else by Slack's error code."""
    code = error_code(body)
    described = f"{what} ({code})" if code else what
    if status != 200:  # the HTTP status wins, as for every notifier; Slack's codes refine a 200 with ok: false
        return error_for_status(status, described, headers=headers, now_ms=now_ms)
    if code in _RATE_LIMITED:
        retry_after_s = parse_retry_after(headers, now_ms)
        return RetryableSendError(f"{described}: rate limited", reason=Reason.RATE_LIMITED, retry_after_s=retry_after_s)
    if code in _SERVER:
        return RetryableSendError(f"{described}: Slack-side error", reason=Reason.SERVER_ERROR)
    if code in _AUTH:
        return PermanentSendError(f"{described}: the token is not allowed to post", reason=Reason.AUTH)
    if code is not None:
        return PermanentSendError(f"{described}: rejected", reason=Reason.CLIENT_ERROR)
    return RetryableSendError(f"{described}: unreadable answer", reason=Reason.BAD_RESPONSE)


def transport_error(what: str, exc: Exception) -> SendError:
    """The classified error for a request that got no HTTP answer, named by the exception's type alone."""
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.InvalidURL | SlackClientError):
        return PermanentSendError(f"{what}: request not sendable ({kind})", reason=Reason.CLIENT_ERROR)
    return RetryableSendError(f"{what}: connection failed ({kind})", reason=Reason.CONNECTION)
