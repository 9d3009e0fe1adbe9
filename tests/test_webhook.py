"""The webhook notifier against a real local receiver that verifies Standard Webhooks signatures on its own."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from notifiers.protocol import NotifierContext, NotifierGoneError, PermanentSendError, RetryableSendError, SendError
from notifiers.webhook import WebhookConfig, WebhookNotifier
from tests.fakes.base import Reply
from tests.fakes.webhook import WebhookReceiver
from watcher.core.clock import ManualClock
from watcher.core.events import JobProgress, ScenarioFailed
from watcher.core.models import FailureReason
from watcher.core.notification import Notification

ServerFactory = Callable[..., Awaitable[TestServer]]

SECRET = "whsec_" + base64.b64encode(b"benchwatch-test-key-0123456789ab").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"someone-elses-key-0123456789abcd").decode()
T0 = 1_788_228_000_000


@pytest.fixture
def serve(aiohttp_server: ServerFactory) -> Callable[[WebhookReceiver], Awaitable[str]]:
    async def start(receiver: WebhookReceiver) -> str:
        server = await aiohttp_server(receiver.app())
        return str(server.make_url("/hook"))

    return start


def config(url: str, **overrides: Any) -> WebhookConfig:
    return WebhookConfig.model_validate({"type": "webhook", "url": url} | overrides)


def notification(**overrides: Any) -> Notification:
    envelope = {"job_id": "bmj_1", "job_name": "nightly-7", "at_ms": T0}
    events = (
        ScenarioFailed(
            id="ev_1",
            **envelope,
            benchmark_run_id="bmr_1",
            agent_name="claude-code",
            scenario_definition_id="scn_1",
            scenario_name="train-tiny-gpt2",
            scenario_run_id="scr_1",
            failure_reason=FailureReason(exception_type="AgentError", exception_message="exit code 1"),
            duration_ms=5,
        ),
        JobProgress(id="ev_2", **envelope, n_completed=8, n_failed=2, n_done=10),
    )
    fields: dict[str, Any] = {
        "id": "nt_0123456789abcdef",
        "rule": "failures",
        "notifier": "hook",
        "severity": "critical",
        "group_key": "bmj_1",
        "dedup_key": "failures:bmj_1",
        "created_ms": T0,
        "title": "Job nightly-7: scenarios failing",
        "text": "2 of 10 scenarios failed — “quotes” and ünïcode",
        "events": events,
    }
    return Notification.model_validate(fields | overrides)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_posts_the_notification_as_json(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver()
    await WebhookNotifier("hook", config(await serve(receiver)), context).send(notification())

    (delivery,) = receiver.deliveries
    assert delivery.recorded.method == "POST" and delivery.recorded.path == "/hook"
    assert delivery.recorded.headers["Content-Type"] == "application/json"
    assert "webhook-signature" not in {name.lower() for name in delivery.recorded.headers}
    body = delivery.payload
    assert list(body) == [
        "id",
        "rule",
        "notifier",
        "severity",
        "action",
        "dedup_key",
        "group_key",
        "job_id",
        "created_ms",
        "title",
        "text",
        "events",
        "summary",
    ]
    assert body["id"] == "nt_0123456789abcdef" and body["rule"] == "failures" and body["severity"] == "critical"
    assert (body["action"], body["dedup_key"], body["job_id"]) == ("trigger", "failures:bmj_1", "bmj_1")
    assert body["text"] == "2 of 10 scenarios failed — “quotes” and ünïcode"
    assert [event["kind"] for event in body["events"]] == ["scenario.failed", "job.progress"]
    assert body["events"][0]["failure_reason"] == {"exception_type": "AgentError", "exception_message": "exit code 1"}
    assert body["summary"] is None


async def test_the_receiver_verifies_the_signature(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(secret=SECRET)
    clock = ManualClock(T0 + 1234)
    await WebhookNotifier("hook", config(await serve(receiver), secret=SECRET), context, clock).send(notification())

    (delivery,) = receiver.deliveries
    assert delivery.verified is True
    assert delivery.webhook_id == "nt_0123456789abcdef"
    assert delivery.timestamp_s == (T0 + 1234) // 1000


async def test_a_receiver_with_another_secret_rejects_the_signature(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(secret=OTHER_SECRET)
    await WebhookNotifier("hook", config(await serve(receiver), secret=SECRET), context).send(notification())

    assert receiver.deliveries[0].verified is False


async def test_a_retry_carries_the_same_webhook_id_and_a_fresh_signature(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(secret=SECRET).then(Reply(503))
    clock = ManualClock(T0)
    notifier = WebhookNotifier("hook", config(await serve(receiver), secret=SECRET), context, clock)
    with pytest.raises(RetryableSendError) as caught:
        await notifier.send(notification())
    clock.advance(30_000)
    await notifier.send(notification())

    first, second = receiver.deliveries
    assert caught.value.reason == "server_error"
    assert first.webhook_id == second.webhook_id == "nt_0123456789abcdef"
    assert (first.timestamp_s, second.timestamp_s) == (T0 // 1000, T0 // 1000 + 30)
    assert first.verified and second.verified
    assert first.recorded.body == second.recorded.body


async def test_cloudevents_structured_mode(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(secret=SECRET)
    url = await serve(receiver)
    await WebhookNotifier("hook", config(url, format="cloudevents", secret=SECRET), context).send(notification())
    await WebhookNotifier("plain", config(url), context).send(notification())

    cloud, plain = receiver.deliveries
    assert cloud.recorded.headers["Content-Type"] == "application/cloudevents+json"
    assert cloud.problems == () and cloud.verified is True
    assert cloud.cloudevent is not None
    envelope = {key: value for key, value in cloud.cloudevent.items() if key != "data"}
    assert envelope == {
        "specversion": "1.0",
        "id": "nt_0123456789abcdef",
        "source": "benchwatch/failures",
        "type": "benchwatch.notification",
        "time": "2026-09-01T02:00:00.000Z",
        "datacontenttype": "application/json",
        "subject": "bmj_1",
    }
    assert cloud.payload == plain.payload


async def test_a_rule_name_becomes_one_source_segment(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver()
    sent = notification(rule="slow jobs/eu", events=())
    await WebhookNotifier("hook", config(await serve(receiver), format="cloudevents"), context).send(sent)

    event = receiver.deliveries[0].cloudevent
    assert event is not None and event["source"] == "benchwatch/slow%20jobs%2Feu" and "subject" not in event


async def test_configured_headers_are_sent_but_cannot_replace_ours(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(secret=SECRET)
    headers = {"Authorization": "Bearer tok-SECRET-1", "content-type": "text/plain", "X-Team": "evals"}
    url = await serve(receiver)
    await WebhookNotifier("hook", config(url, secret=SECRET, headers=headers), context).send(notification())

    delivery = receiver.deliveries[0]
    sent = delivery.recorded.headers
    assert sent["Authorization"] == "Bearer tok-SECRET-1" and sent["X-Team"] == "evals"
    assert sent["Content-Type"] == "application/json"
    assert delivery.verified is True


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(410), (NotifierGoneError, "client_error", None)),
        (Reply(429, headers={"Retry-After": "7"}), (RetryableSendError, "rate_limited", 7.0)),
        (Reply(503), (RetryableSendError, "server_error", None)),
        (Reply(408), (RetryableSendError, "timeout", None)),
        (Reply(400, {"error": "bad"}), (PermanentSendError, "client_error", None)),
        (Reply(401), (PermanentSendError, "auth", None)),
        (Reply(302, headers={"Location": "http://elsewhere.test/"}), (PermanentSendError, "client_error", None)),
    ],
)
async def test_statuses_are_classified(
    serve: Any,
    context: NotifierContext,
    reply: Reply,
    expected: tuple[type[Exception], str, float | None],
) -> None:
    receiver = WebhookReceiver().then(reply)
    with pytest.raises(SendError) as caught:
        await WebhookNotifier("hook", config(await serve(receiver)), context).send(notification())

    assert (type(caught.value), caught.value.reason, getattr(caught.value, "retry_after_s", None)) == expected
    assert len(receiver.requests) == 1  # a redirect is not followed


async def test_a_slow_receiver_times_out_on_time(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver().then(Reply(200, delay_s=1.0))
    notifier = WebhookNotifier("hook", config(await serve(receiver), timeout="200ms"), context)
    started = time.monotonic()
    with pytest.raises(RetryableSendError) as caught:
        await notifier.send(notification())
    elapsed_s = time.monotonic() - started

    assert caught.value.reason == "timeout"
    assert str(caught.value).endswith("/hook: no answer within 0.2 s")
    assert 0.15 <= elapsed_s < 0.8


async def test_a_closed_port_is_a_retryable_connection_error(context: NotifierContext) -> None:
    notifier = WebhookNotifier("hook", config(f"http://127.0.0.1:{free_port()}/hook"), context)
    with pytest.raises(RetryableSendError) as caught:
        await notifier.send(notification())

    assert caught.value.reason == "connection"


async def test_no_secret_reaches_an_error_or_a_repr(serve: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver().then(Reply(500))
    url = (await serve(receiver)).replace("http://", "http://user:pw-SECRET-3@") + "?token=query-SECRET-2"
    settings = config(url, secret=SECRET, headers={"X-Api-Key": "key-SECRET-1"})
    notifier = WebhookNotifier("hook", settings, context)
    with pytest.raises(RetryableSendError) as caught:
        await notifier.send(notification())

    port = url.split("@", 1)[1].split("/", 1)[0]
    assert str(caught.value) == f"webhook POST {port}/hook: HTTP 500"
    secrets = ("SECRET", SECRET.removeprefix("whsec_"), "token=")
    for text in (str(caught.value), repr(caught.value), repr(notifier)):
        assert not any(secret in text for secret in secrets), text
    assert json.loads(receiver.requests[0].body)["id"] == "nt_0123456789abcdef"
