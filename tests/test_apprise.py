"""The Apprise notifier: real Apprise code doing real HTTP to local aiohttp receivers, through its `json://` and
`ntfy://` schemes — the format each service takes, classified failures, retries that skip the URLs already reached,
secrets shown by their scheme only, and the config errors (an unknown scheme, the package missing)."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestServer

from notifiers.apprise import AppriseConfig, AppriseNotifier, markdown_text
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError
from tests.fakes.base import FakeServer, Reply
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.events import JobFinished
from watcher.core.notification import Notification
from watcher.core.summary import JobSummary

ServerFactory = Callable[..., Awaitable[TestServer]]

DASHBOARD = "https://platform.runloop.ai"
TOKEN = "tk_S3CRET_t0ken"


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> tuple[FakeServer, str]:
    """A local receiver, and its host:port for Apprise URLs."""
    fake = FakeServer()
    server = await aiohttp_server(fake.app())
    return fake, f"{server.host}:{server.port}"


def notifier(context: NotifierContext, *urls: str, timeout: str = "5s") -> AppriseNotifier:
    config = AppriseConfig.model_validate({"type": "apprise", "urls": list(urls), "timeout": timeout})
    return AppriseNotifier("phones", config, context)


def notification(*, job_name: str = "nightly-7", action: str = "trigger", severity: str = "critical") -> Notification:
    finished = JobFinished(
        id="ev_1", job_id="bmj_1", job_name=job_name, at_ms=1_788_228_000_000, from_state="running", state="failed",
        failure_reason=None, outcomes=(),
    )  # fmt: skip
    summary = JobSummary(
        job_id="bmj_1", job_name=job_name, state="failed", failure_reason=None, failure_rate=0.5, scores={},
        min_score=None, agents=(), failures=(), dashboard_url=DASHBOARD,
    )  # fmt: skip
    return Notification.model_validate(
        {
            "id": "nt_1", "rule": "job-failed", "notifier": "phones", "severity": severity, "action": action,
            "group_key": "bmj_1", "dedup_key": "job-failed:bmj_1", "created_ms": 1_788_228_000_000,
            "title": f"Job {job_name} failed", "text": f"{job_name} ended failed.\n2 of 4 scenarios failed.",
            "events": (finished,), "summary": summary,
        }
    )  # fmt: skip


async def test_json_gets_the_title_and_plain_text_with_the_dashboard_link(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    await notifier(context, f"json://{host}/hook").send(notification())

    [request] = fake.requests
    assert request.path == "/hook" and request.headers["Content-Type"] == "application/json"
    assert request.json() | {"attachments": []} == {
        "version": "1.0",
        "title": "Job nightly-7 failed",
        "message": f"nightly-7 ended failed.\n2 of 4 scenarios failed.\n\nRunloop dashboard: {DASHBOARD}",
        "attachments": [],
        "type": "failure",  # critical
    }


async def test_a_resolution_is_a_success_and_a_warning_a_warning(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    hook = notifier(context, f"json://{host}/hook")
    await hook.send(notification(action="resolve"))
    await hook.send(notification(severity="warning"))
    assert [request.json()["type"] for request in fake.requests] == ["success", "warning"]


async def test_ntfy_gets_markdown_where_it_takes_it_and_plain_text_where_not(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    tricky = "nightly-*7* <b>[x](http://evil)"
    await notifier(context, f"ntfy://{host}/bench?format=markdown", f"ntfy://{host}/plain").send(
        notification(job_name=tricky)
    )

    by_topic = {request.json()["topic"]: request for request in fake.requests}
    markdown, plain = by_topic["bench"], by_topic["plain"]
    assert markdown.headers.get("X-Markdown") == "yes" and "X-Markdown" not in plain.headers
    assert markdown.json()["title"] == plain.json()["title"] == f"Job {tricky} failed"  # a title field: as written
    assert markdown.json()["message"] == (
        markdown_text(f"{tricky} ended failed.\n2 of 4 scenarios failed.") + f"\n\n[Runloop dashboard]({DASHBOARD})"
    )
    assert r"nightly\-\*7\* \<b\>\[x\]\(http\:\/\/evil\)" in markdown.json()["message"]  # shown, never a link
    assert plain.json()["message"].startswith(f"{tricky} ended failed.")


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        (Reply(503), RetryableSendError, "server_error"),
        (Reply(429, headers={"Retry-After": "3"}), RetryableSendError, "rate_limited"),
        (Reply(408), RetryableSendError, "timeout"),
        (Reply(400), PermanentSendError, "client_error"),
        (Reply(404), PermanentSendError, "not_found"),
        (Reply(401), PermanentSendError, "auth"),
        (Reply(410), PermanentSendError, "client_error"),  # one service gone: not the whole notifier
    ],
)
async def test_failures_are_classified_like_every_http_notifier(
    receiver: tuple[FakeServer, str], context: NotifierContext, reply: Reply, error: type[Exception], reason: str
) -> None:
    fake, host = receiver
    fake.then(reply)
    with pytest.raises(error) as failed:
        await notifier(context, f"json://{host}/hook?token={TOKEN}").send(notification())
    assert failed.value.reason == reason  # type: ignore[attr-defined]
    assert str(failed.value).startswith("apprise json:// (urls[0]): ") and TOKEN not in str(failed.value)
    assert type(failed.value) is error  # 410 is not NotifierGoneError


async def test_nothing_listening_is_a_retryable_connection_error(context: NotifierContext) -> None:
    with pytest.raises(RetryableSendError) as failed:
        await notifier(context, "ntfy://127.0.0.1:1/bench").send(notification())
    assert failed.value.reason == "connection"


async def test_a_service_slower_than_the_timeout_is_a_retryable_timeout(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    fake.gate = asyncio.Event()  # never opened: the receiver does not answer
    started = time.monotonic()
    with pytest.raises(RetryableSendError) as failed:
        await notifier(context, f"json://{host}/hook", timeout="500ms").send(notification())
    assert failed.value.reason == "timeout"
    assert time.monotonic() - started < 0.5 + 2.5  # our timeout (and the thread's grace), not requests' own
    fake.gate.set()


async def test_a_retry_goes_only_to_the_urls_that_have_not_had_it(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    phones = notifier(context, f"json://{host}/ok", f"json://{host}/flaky")
    fake.answer = lambda recorded: Reply(503) if recorded.path == "/flaky" else Reply(200)  # type: ignore[method-assign]
    with pytest.raises(RetryableSendError) as failed:
        await phones.send(notification())
    assert "json:// (urls[1]): HTTP 503" in str(failed.value) and "urls[0]" not in str(failed.value)

    fake.answer = lambda recorded: Reply(200)  # type: ignore[method-assign]
    await phones.send(notification())  # the worker's retry

    assert sorted(request.path for request in fake.requests) == ["/flaky", "/flaky", "/ok"]
    assert await context.state.rows() == {}  # done: nothing kept
    await phones.send(notification())  # a later send of the same id (at least once) goes to both again
    assert len(fake.requests) == 5


class RootRecords(logging.Handler):
    """What reaches the root logger, where benchwatch's log handlers are (pytest's caplog also reads loggers that
    do not propagate, so it cannot tell what the service would print)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("aiohttp.access"):  # the receiver's own access log prints the paths it serves
            self.messages.append(f"{record.name}: {record.getMessage()}")


async def test_urls_are_secrets_shown_by_their_scheme_only(
    receiver: tuple[FakeServer, str], context: NotifierContext
) -> None:
    fake, host = receiver
    fake.then(Reply(500))
    root = logging.getLogger()
    records, level = RootRecords(), root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)
    try:
        url = f"json://bw:{TOKEN}@{host}/hook/{TOKEN}"
        phones = notifier(context, url, f"ntfys://{TOKEN}@ntfy.example/alerts")
        with pytest.raises(RetryableSendError) as failed:
            await phones.send(notification())
        config = AppriseConfig.model_validate({"type": "apprise", "urls": [url, f"tgram://123:{TOKEN}/456"]})
    finally:
        root.removeHandler(records)
        root.setLevel(level)
    shown = [str(failed.value), repr(phones), config.destination(), repr(config), str(config), *records.messages]
    assert not any(TOKEN in text for text in shown), [text for text in shown if TOKEN in text]
    assert config.destination() == "Apprise: json://, tgram://"
    assert str(failed.value) == "apprise json:// (urls[0]): HTTP 500; apprise ntfys:// (urls[1]): connection failed"


@pytest.mark.parametrize(
    ("urls", "message"),
    [
        ([f"nosuchservice://{TOKEN}@host/x"], "urls[0]: Apprise does not understand this nosuchservice:// URL"),
        (["ntfy://host/x", f"{TOKEN}"], "urls[1]: Apprise does not understand this (a URL without a scheme) URL"),
        ([], "urls: List should have at least 1 item"),
    ],
)
def test_config_mistakes_name_the_url_by_index_and_scheme(tmp_path: Path, urls: list[str], message: str) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(yaml.safe_dump({"notifiers": {"phones": {"type": "apprise", "urls": urls}}}))
    with pytest.raises(ConfigError) as refused:
        load_config(path, {})
    assert message in str(refused.value) and TOKEN not in str(refused.value)


def test_without_the_package_the_config_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # as if `pip install benchwatch` without the extra
    path = tmp_path / "benchwatch.yaml"
    path.write_text("notifiers:\n  phones:\n    type: apprise\n    urls: ['ntfy://ntfy.example/bench']\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, {})
    assert str(refused.value) == (
        f"{path}:2: notifiers.phones: the apprise notifier needs the apprise package: pip install 'benchwatch[apprise]'"
    )
