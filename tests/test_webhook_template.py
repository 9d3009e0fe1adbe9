"""Webhook `format: template`: a Jinja2 body, signed like any other, checked as JSON when it claims to be JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from notifiers.protocol import NotifierContext, PermanentSendError
from notifiers.webhook import WebhookNotifier
from notifiers.worker import DeliveryPolicy, DeliveryWorker
from tests.conftest import FakeSleep
from tests.fakes.webhook import WebhookReceiver, verify
from tests.test_webhook import SECRET, config, notification
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.clock import ManualClock
from watcher.pipeline.sample import sample_notification
from watcher.store.sqlite import SQLiteStore


async def _url(aiohttp_server: Any, receiver: WebhookReceiver) -> str:
    server = await aiohttp_server(receiver.app())
    return str(server.make_url("/hook"))


CHAT_BODY = """{"text": {{ (job_name ~ ': ' ~ notification.title) | tojson }}, "count": {{ count }},
 "first": {{ event.scenario_name | tojson }}, "severity": "{{ severity }}"}"""


async def test_a_template_body_is_rendered_signed_and_sent(aiohttp_server: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(SECRET)
    url = await _url(aiohttp_server, receiver)
    hook = WebhookNotifier("hook", config(url, format="template", body=CHAT_BODY, secret=SECRET), context)
    await hook.send(notification(title='say "hi" <@here>'))
    (delivery,) = receiver.deliveries
    assert delivery.verified is True
    assert delivery.payload == {
        "text": 'nightly-7: say "hi" <@here>', "count": 2, "first": "train-tiny-gpt2", "severity": "critical",
    }  # fmt: skip
    assert delivery.recorded.headers["Content-Type"] == "application/json"


async def test_a_plain_text_body_goes_as_its_content_type(aiohttp_server: Any, context: NotifierContext) -> None:
    receiver = WebhookReceiver(SECRET)
    url = await _url(aiohttp_server, receiver)
    body = "{{ rule }} for {{ job_id }}: {% for e in events %}{{ e.kind }} {% endfor %}"
    hook = WebhookNotifier(
        "hook", config(url, format="template", body=body, content_type="text/plain", secret=SECRET), context
    )
    await hook.send(notification())
    (recorded,) = receiver.requests
    assert recorded.body == b"failures for bmj_1: scenario.failed job.progress "
    assert recorded.headers["Content-Type"] == "text/plain"
    headers = {name.lower(): value for name, value in recorded.headers.items()}
    assert verify(SECRET, headers, recorded.body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"text": "{{ notification.title }}"}', "rendered body is not valid JSON (Expecting ',' delimiter at line 1"),
        ("{{ no_such_name }}", "body template failed: 'no_such_name' is undefined"),
        ("{{ ''.__class__.__mro__ }}", "body template failed: access to attribute '__class__'"),
    ],
)
async def test_a_body_that_cannot_be_sent_is_a_permanent_error_saying_why(
    aiohttp_server: Any, context: NotifierContext, body: str, reason: str
) -> None:
    receiver = WebhookReceiver()
    url = await _url(aiohttp_server, receiver)
    hook = WebhookNotifier("hook", config(url, format="template", body=body), context)
    with pytest.raises(PermanentSendError) as caught:
        await hook.send(notification(title='say "hi"'))
    assert reason in str(caught.value) and caught.value.reason == "client_error"
    assert receiver.requests == []


def test_the_template_is_compiled_when_the_config_loads(tmp_path: Path) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "notifiers:\n  hook:\n    type: webhook\n    url: https://chat.example.com/hook\n    format: template\n"
        "    body: '{{ rule '\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value).startswith(f"{path}:6: notifiers.hook.body: invalid template (line 1):")
    path.write_text("notifiers:\n  hook: {type: webhook, url: 'https://x.example', format: template}\n")
    with pytest.raises(ConfigError, match="format: template needs a body"):
        load_config(path, {})


def test_the_body_context_has_every_title_name_and_the_notification() -> None:
    from notifiers.body_template import body_context
    from notifiers.webhook import notification_json
    from rules.templates import template_context

    sent = notification()
    title_names = template_context(rule="r", severity="info", events=sent.events, summary=None)
    context = body_context(notification_json(sent))
    assert set(context) == set(title_names) | {"notification"}
    assert json.dumps(context["notification"]) == json.dumps(notification_json(sent))


async def test_the_worker_dead_letters_a_body_that_is_not_json(
    aiohttp_server: Any, tmp_path: Path, context: NotifierContext, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    receiver = WebhookReceiver()
    url = await _url(aiohttp_server, receiver)
    hook = WebhookNotifier("hook", config(url, format="template", body='{"text": "{{ title }}"}'), context)
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(notifications=[sample_notification("hook", clock.now_ms())])
        worker = DeliveryWorker(store, {"hook": hook}, {"hook": DeliveryPolicy()}, clock=clock, sleep=fake_sleep)
        await worker.drain()
        (item,) = await store.outbox_items()
    assert (item.status, item.attempts, item.last_reason) == ("dead", 1, "client_error")
    assert "body template failed: 'title' is undefined" in (item.last_error or "")
    assert receiver.requests == []
