"""One conformance test over every notifier type: the same HTTP status means the same classified error,
timeouts are respected, and no secret leaks into errors, reprs or logs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from notifiers.discord import DiscordConfig, DiscordNotifier
from notifiers.email import EmailConfig, EmailNotifier
from notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from notifiers.protocol import Notifier, NotifierContext, NotifierGoneError, SendError
from notifiers.slack import SlackConfig, SlackNotifier
from notifiers.teams import TeamsConfig, TeamsNotifier
from notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.fakes.base import FakeServer, Reply
from tests.fakes.chat import FakeDiscord, FakeTeamsWorkflow
from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack
from tests.fakes.smtp import FakeSmtp, SmtpReply
from tests.fakes.webhook import WebhookReceiver
from watcher.pipeline.sample import sample_notification

SLACK_TOKEN = "xoxb-CONFORMANCE-SECRET-TOKEN"
HOOK_SECRET = "whsec_Q09ORk9STUFOQ0UtU0VDUkVULUhPT0s="
ROUTING_KEY = "R0UTING-CONFORMANCE-SECRET"
SMTP_PASSWORD = "smtp-CONFORMANCE-SECRET"
DISCORD_TOKEN = "D1SC0RD-CONFORMANCE-SECRET"
TEAMS_SIG = "T3AMS-CONFORMANCE-SIG"
ALERTMANAGER_TOKEN = "AL3RTMANAG3R-CONFORMANCE-TOKEN"
SECRETS = (
    SLACK_TOKEN, HOOK_SECRET, ROUTING_KEY, SMTP_PASSWORD, "T0SECRET/B0SECRET/W3BH00KSECRET", DISCORD_TOKEN, TEAMS_SIG,
    ALERTMANAGER_TOKEN,
)  # fmt: skip
TIMEOUT_S = 0.3


@dataclass(frozen=True)
class Kind:
    """A notifier type under test: how to make its fake server and a notifier pointed at it."""

    name: str
    fake: Callable[[], FakeServer]
    build: Callable[[TestServer, NotifierContext], Notifier]


def _slack_token(server: TestServer, context: NotifierContext) -> Notifier:
    config = SlackConfig(type="slack", token=SLACK_TOKEN, channel="#bench", base_url=str(server.make_url("/api/")))
    return SlackNotifier("slack-bot", config, context, timeout_s=TIMEOUT_S)


def _slack_webhook(server: TestServer, context: NotifierContext) -> Notifier:
    config = SlackConfig(type="slack", webhook_url=str(server.make_url("/services/T0SECRET/B0SECRET/W3BH00KSECRET")))
    return SlackNotifier("slack-hook", config, context, timeout_s=TIMEOUT_S)


def _webhook(server: TestServer, context: NotifierContext) -> Notifier:
    config = WebhookConfig.model_validate(
        {
            "type": "webhook",
            "url": str(server.make_url("/hook?token=T0SECRET")),
            "secret": HOOK_SECRET,
            "timeout": "300ms",
        }
    )
    return WebhookNotifier("hook", config, context)


def _pagerduty(server: TestServer, context: NotifierContext) -> Notifier:
    config = PagerDutyConfig(type="pagerduty", routing_key=ROUTING_KEY, url=str(server.make_url("/v2/enqueue")))
    return PagerDutyNotifier("pager", config, context, timeout_s=TIMEOUT_S)


def _discord(server: TestServer, context: NotifierContext) -> Notifier:
    url = str(server.make_url(f"/api/webhooks/123/{DISCORD_TOKEN}?wait=true"))
    config = DiscordConfig.model_validate({"type": "discord", "webhook_url": url, "timeout": "300ms"})
    return DiscordNotifier("discord", config, context)


def _teams(server: TestServer, context: NotifierContext) -> Notifier:
    url = str(server.make_url(f"/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}"))
    config = TeamsConfig.model_validate({"type": "teams", "webhook_url": url, "timeout": "300ms"})
    return TeamsNotifier("teams", config, context)


def _alertmanager(server: TestServer, context: NotifierContext) -> Notifier:
    url = str(server.make_url("/"))
    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": url, "bearer_token": ALERTMANAGER_TOKEN, "timeout": "300ms"}
    )
    return AlertmanagerNotifier("alertmanager", config, context)


HTTP_KINDS = [
    Kind("slack-token", lambda: FakeSlack(token=SLACK_TOKEN), _slack_token),
    Kind("slack-webhook", FakeSlack, _slack_webhook),
    Kind("webhook", lambda: WebhookReceiver(HOOK_SECRET), _webhook),
    Kind("pagerduty", FakePagerDuty, _pagerduty),
    Kind("discord", FakeDiscord, _discord),
    Kind("teams", FakeTeamsWorkflow, _teams),
    Kind("alertmanager", FakeServer, _alertmanager),
]
# status → (retryable, reason); 410 is its own case: the notifier is gone
EXPECTED = {
    429: (True, "rate_limited"),
    500: (True, "server_error"),
    502: (True, "server_error"),
    503: (True, "server_error"),
    408: (True, "timeout"),
    400: (False, "client_error"),
    422: (False, "client_error"),
    404: (False, "not_found"),
    401: (False, "auth"),
    403: (False, "auth"),
}


async def _serve(kind: Kind, aiohttp_server: Any, context: NotifierContext) -> tuple[FakeServer, Notifier]:
    fake = kind.fake()
    server = await aiohttp_server(fake.app())
    return fake, kind.build(server, context)


def _our_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged except the fake servers' own access logs (which print the paths they serve)."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("aiohttp.access"))


def _assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("kind", HTTP_KINDS, ids=lambda k: k.name)
async def test_success(kind: Kind, aiohttp_server: Any, context: NotifierContext) -> None:
    fake, notifier = await _serve(kind, aiohttp_server, context)
    await notifier.send(sample_notification(notifier.name, 1_788_228_000_000))
    assert fake.requests
    _assert_no_secret(repr(notifier))


@pytest.mark.parametrize("status", sorted(EXPECTED))
@pytest.mark.parametrize("kind", HTTP_KINDS, ids=lambda k: k.name)
async def test_status_classification(
    kind: Kind, status: int, aiohttp_server: Any, context: NotifierContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake, notifier = await _serve(kind, aiohttp_server, context)
    fake.then(*[Reply(status, {"ok": False, "error": "x"}, headers={"Retry-After": "3"})] * 3)
    with pytest.raises(SendError) as caught:
        await notifier.send(sample_notification(notifier.name, 1_788_228_000_000))
    retryable, reason = EXPECTED[status]
    assert (caught.value.retryable, caught.value.reason) == (retryable, reason)
    if status == 429:
        assert getattr(caught.value, "retry_after_s", None) == 3.0
    _assert_no_secret(str(caught.value), repr(caught.value), repr(notifier), _our_logs(caplog))


@pytest.mark.parametrize("kind", HTTP_KINDS, ids=lambda k: k.name)
async def test_gone(kind: Kind, aiohttp_server: Any, context: NotifierContext) -> None:
    fake, notifier = await _serve(kind, aiohttp_server, context)
    fake.then(*[Reply(410, "gone")] * 3)
    with pytest.raises(NotifierGoneError):
        await notifier.send(sample_notification(notifier.name, 1_788_228_000_000))


@pytest.mark.parametrize("kind", HTTP_KINDS, ids=lambda k: k.name)
@pytest.mark.slow
async def test_timeouts_are_respected(kind: Kind, aiohttp_server: Any, context: NotifierContext) -> None:
    fake, notifier = await _serve(kind, aiohttp_server, context)
    fake.then(*[Reply(200, {"ok": True}, delay_s=5)] * 3)
    started = time.monotonic()
    with pytest.raises(SendError) as caught:
        await notifier.send(sample_notification(notifier.name, 1_788_228_000_000))
    assert (caught.value.retryable, caught.value.reason) == (True, "timeout")
    assert time.monotonic() - started < TIMEOUT_S + 1.0
    _assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("reply", "retryable", "reason"),
    [
        (SmtpReply("DATA", "451 4.3.0 try again later"), True, "server_error"),
        (SmtpReply("RCPT", "550 5.1.1 no such user"), False, "client_error"),
        (SmtpReply("MAIL", "421 4.7.0 closing"), True, "server_error"),
    ],
)
async def test_email_replies_are_classified_the_same_way(
    reply: SmtpReply, retryable: bool, reason: str, context: NotifierContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeSmtp(users={"bench": SMTP_PASSWORD}) as smtp:
        smtp.then(reply)
        config = EmailConfig.model_validate(
            {"type": "email", "host": smtp.host, "port": smtp.port, "from": "bw@example.com", "to": ["ops@example.com"],
             "username": "bench", "password": SMTP_PASSWORD}
        )  # fmt: skip
        notifier = EmailNotifier("mail", config, context, timeout_s=TIMEOUT_S)
        with pytest.raises(SendError) as caught:
            await notifier.send(sample_notification("mail", 1_788_228_000_000))
    assert (caught.value.retryable, caught.value.reason) == (retryable, reason)
    _assert_no_secret(str(caught.value), repr(notifier), _our_logs(caplog))


async def test_email_wrong_password_is_a_permanent_auth_error(context: NotifierContext) -> None:
    async with FakeSmtp(users={"bench": "the-real-one"}) as smtp:
        config = EmailConfig.model_validate(
            {"type": "email", "host": smtp.host, "port": smtp.port, "from": "bw@example.com", "to": ["ops@example.com"],
             "username": "bench", "password": SMTP_PASSWORD}
        )  # fmt: skip
        with pytest.raises(SendError) as caught:
            await EmailNotifier("mail", config, context).send(sample_notification("mail", 1_788_228_000_000))
    assert (caught.value.retryable, caught.value.reason) == (False, "auth")
    _assert_no_secret(str(caught.value))
