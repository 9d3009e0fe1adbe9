"""The Slack notifier against a fake Slack on a real port: webhook and Web API, threads per job, errors, limits."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from notifiers.protocol import (
    NotifierContext,
    NotifierGoneError,
    PermanentSendError,
    RetryableSendError,
    SendError,
)
from notifiers.slack import SlackConfig, SlackNotifier
from notifiers.slack_blocks import (
    HEADER_MAX_CHARS,
    MAX_BLOCKS,
    SECTION_MAX_CHARS,
    duration_text,
    message_blocks,
    message_text,
    root_blocks,
    root_text,
)
from tests.conftest import ServerFactory
from tests.fakes.base import Reply
from tests.fakes.slack import CHANNEL_ID, WEBHOOK_PATH, FakeSlack
from watcher.core.clock import ManualClock
from watcher.core.events import ScenarioFailed
from watcher.core.failureclass import FailureCounts
from watcher.core.models import FailureReason
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, FailureExample, FailureGroup, JobSummary
from watcher.store.protocol import NamespacedState
from watcher.store.sqlite import SQLiteStore

TOKEN = "xoxb-1111-2222-SECRETTOKENVALUE"
DASHBOARD = "https://platform.runloop.ai"
T0_MS = 1_788_228_000_000


# --- builders -------------------------------------------------------------------------------------------------


def agent(name: str, *, score: float | None = 0.8125, finished: bool = True, index: int = 0) -> AgentSummary:
    run_id = f"bmr_{index:04d}{name.encode().hex()[:8]}"
    return AgentSummary(
        benchmark_run_id=run_id,
        agent_name=name,
        model_name="claude-sonnet-4",
        finished=finished,
        score=score,
        average_score=score,
        n_completed=40,
        n_failed=2,
        n_timeout=1,
        duration_ms=1_385_000,
        url=f"{DASHBOARD}/benchmarks/custom/bmd_swe/runs/{run_id}",
    )


def failure_group(kind: str, count: int, *, message: str = "Command exited with status 1") -> FailureGroup:
    examples = tuple(
        FailureExample(
            scenario_name=f"django__django-{11000 + i}",
            agent_name="claude-code",
            message=message,
            url=f"{DASHBOARD}/scenarios/scs_{i}/runs/scr_{i}",
        )
        for i in range(min(count, 5))
    )
    return FailureGroup(exception_type=kind, count=count, examples=examples)


def summary(
    *,
    job_name: str = "swe-bench-lite nightly",
    state: str = "running",
    agents: tuple[AgentSummary, ...] | None = None,
    failures: tuple[FailureGroup, ...] | None = None,
    n_done: int = 128,
) -> JobSummary:
    rows = agents if agents is not None else (agent("claude-code", index=1), agent("codex", score=None, index=2))
    return JobSummary(
        n_completed=n_done - 8,
        n_failed=6,
        n_timeout=2,
        n_canceled=0,
        n_done=n_done,
        n_expected=300,
        job_id="bmj_31xYq8",
        job_name=job_name,
        state=state,
        failure_reason=None,
        failure_rate=round(8 / n_done, 6),
        scores={row.agent_name or "": row.score for row in rows if row.score is not None},
        min_score=0.8125,
        agents=rows,
        failures=failures
        if failures is not None
        else (failure_group("TimeoutError", 5), failure_group("AssertionError", 1)),
        failures_by_class=FailureCounts(setup=1, agent=5),
        dashboard_url=DASHBOARD,
    )


def failed_event(job_name: str = "swe-bench-lite nightly", *, job_id: str = "bmj_31xYq8") -> ScenarioFailed:
    return ScenarioFailed(
        id="ev_1",
        job_id=job_id,
        job_name=job_name,
        at_ms=T0_MS,
        benchmark_run_id="bmr_0001",
        agent_name="claude-code",
        scenario_definition_id="scs_1",
        scenario_name="django__django-11001",
        scenario_run_id="scr_1",
        failure_reason=FailureReason(exception_type="TimeoutError", exception_message="took too long"),
        duration_ms=60_000,
    )


def notification(
    job_summary: JobSummary | None = None,
    *,
    title: str = "swe-bench-lite nightly: 6 scenarios failed",
    text: str = "swe-bench-lite nightly: failed: django__django-11001 (claude-code) — TimeoutError",
    action: str = "trigger",
    created_ms: int = T0_MS,
    with_job: bool = True,
) -> Notification:
    job = job_summary if job_summary is not None else summary()
    return Notification(
        id=f"nt_{created_ms}_{action}",
        rule="failures",
        notifier="team-slack",
        severity="warning",
        action=action,  # type: ignore[arg-type]
        group_key="bmj_31xYq8",
        dedup_key="failures/bmj_31xYq8",
        created_ms=created_ms,
        title=title,
        text=text,
        events=(failed_event(job.job_name, job_id=job.job_id),) if with_job else (),
        summary=job if with_job else None,
    )


def texts(value: Any) -> Iterator[str]:
    """Every `text` string anywhere in a Block Kit structure."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                yield item
            else:
                yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


# --- fixtures -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    """The fake Slack and the real local server it answers on."""

    fake: FakeSlack
    server: TestServer


@pytest.fixture
async def site(aiohttp_server: ServerFactory) -> Site:
    fake = FakeSlack(token=TOKEN)
    return Site(fake, await aiohttp_server(fake.app()))


def token_config(server: TestServer, **overrides: Any) -> SlackConfig:
    base_url = str(server.make_url("/api/"))
    return SlackConfig(type="slack", token=TOKEN, channel="#benchmarks", base_url=base_url, **overrides)


def webhook_url(server: TestServer) -> str:
    return str(server.make_url(WEBHOOK_PATH))


def webhook_notifier(server: TestServer, context: NotifierContext) -> SlackNotifier:
    config = SlackConfig(type="slack", webhook_url=webhook_url(server))
    return SlackNotifier("team-slack", config, context, ManualClock())


def token_notifier(server: TestServer, context: NotifierContext, **overrides: Any) -> SlackNotifier:
    return SlackNotifier("team-slack", token_config(server, **overrides), context, ManualClock())


# --- webhook mode ---------------------------------------------------------------------------------------------


async def test_webhook_posts_blocks_and_fallback_text(site: Site, context: NotifierContext) -> None:
    sent = notification()
    await webhook_notifier(site.server, context).send(sent)
    [payload] = site.fake.webhook_posts()
    assert payload["blocks"] == message_blocks(sent)
    assert payload["text"] == message_text(sent)
    assert payload["blocks"][0]["type"] == "header"
    assert payload["unfurl_links"] is False
    assert site.fake.requests[0].path == WEBHOOK_PATH


@pytest.mark.parametrize(
    ("reply", "error_type", "reason"),
    [
        (Reply(410, "channel_is_archived"), NotifierGoneError, "client_error"),
        (Reply(404, "no_service"), PermanentSendError, "not_found"),
        (Reply(403, "action_prohibited"), PermanentSendError, "auth"),
        (Reply(400, "invalid_blocks"), PermanentSendError, "client_error"),
        (Reply(429, "rate_limited", {"Retry-After": "12"}), RetryableSendError, "rate_limited"),
        (Reply(503, "service_unavailable"), RetryableSendError, "server_error"),
    ],
)
async def test_webhook_errors_are_classified(
    site: Site,
    context: NotifierContext,
    reply: Reply,
    error_type: type[SendError],
    reason: str,
) -> None:
    site.fake.then(reply)
    with pytest.raises(error_type) as raised:
        await webhook_notifier(site.server, context).send(notification())
    assert type(raised.value) is error_type
    assert raised.value.reason == reason
    assert str(reply.body) in str(raised.value)
    assert WEBHOOK_PATH not in str(raised.value)
    if reply.status == 429:
        assert isinstance(raised.value, RetryableSendError)
        assert raised.value.retry_after_s == 12


# --- token mode: threads --------------------------------------------------------------------------------------


async def test_first_send_posts_root_then_reply_in_its_thread(site: Site, context: NotifierContext) -> None:
    sent = notification()
    await token_notifier(site.server, context).send(sent)
    root, reply = site.fake.posts()
    assert root["channel"] == "#benchmarks"
    assert "thread_ts" not in root
    assert root["blocks"] == root_blocks(sent)
    assert root["text"] == root_text(sent)
    assert reply["channel"] == CHANNEL_ID
    assert reply["thread_ts"] == site.fake.posted_ts[0]
    assert reply["blocks"] == message_blocks(sent)
    assert reply["text"] == message_text(sent)
    assert site.fake.updates() == []
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in site.fake.requests)


async def test_later_sends_reply_in_the_same_thread_and_update_the_root_even_after_a_restart(
    site: Site, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with SQLiteStore(tmp_path / "s.db") as store:
        context = NotifierContext(session=session, state=NamespacedState(store, "slack.thread"))
        notifier = token_notifier(site.server, context)
        await notifier.send(notification(created_ms=T0_MS))
        await notifier.send(notification(summary(n_done=200), created_ms=T0_MS + 60_000))
    thread_ts = site.fake.posted_ts[0]
    assert [post.get("thread_ts") for post in site.fake.posts()] == [None, thread_ts, thread_ts]
    [update] = site.fake.updates()
    assert (update["channel"], update["ts"]) == (CHANNEL_ID, thread_ts)
    assert "200/300 done" in update["blocks"][1]["elements"][0]["text"]

    async with SQLiteStore(tmp_path / "s.db") as store:  # a restart: new store connection, new notifier
        context = NotifierContext(session=session, state=NamespacedState(store, "slack.thread"))
        await token_notifier(site.server, context).send(
            notification(summary(state="completed", n_done=300), action="resolve", created_ms=T0_MS + 120_000)
        )
    assert len(site.fake.posts()) == 4
    assert site.fake.posts()[3]["thread_ts"] == thread_ts
    assert site.fake.updates()[-1]["ts"] == thread_ts
    assert "completed" in site.fake.updates()[-1]["text"]


async def test_a_deleted_root_is_posted_again_and_remembered(site: Site, context: NotifierContext) -> None:
    notifier = token_notifier(site.server, context)
    await notifier.send(notification(created_ms=T0_MS))
    old_thread = site.fake.posts()[1]["thread_ts"]
    site.fake.forget(old_thread)
    await notifier.send(notification(created_ms=T0_MS + 1))
    await notifier.send(notification(created_ms=T0_MS + 2))
    threads = [post.get("thread_ts") for post in site.fake.posts()]
    new_thread = threads[4]
    assert threads == [None, old_thread, None, new_thread, new_thread]
    assert new_thread != old_thread
    assert [update["ts"] for update in site.fake.updates()] == [old_thread, new_thread]


async def test_concurrent_sends_for_one_job_create_one_root(site: Site, context: NotifierContext) -> None:
    site.fake.answer_delay_s = 0.02  # so the sends overlap on the wire
    notifier = token_notifier(site.server, context)
    await asyncio.gather(*(notifier.send(notification(created_ms=T0_MS + i)) for i in range(5)))
    roots = [post for post in site.fake.posts() if "thread_ts" not in post]
    replies = [post for post in site.fake.posts() if "thread_ts" in post]
    assert len(roots) == 1
    assert len(replies) == 5
    assert len({reply["thread_ts"] for reply in replies}) == 1
    assert len(site.fake.updates()) == 4


async def test_each_job_gets_its_own_thread(site: Site, context: NotifierContext) -> None:
    notifier = token_notifier(site.server, context)
    await notifier.send(notification())
    await notifier.send(notification(other_job()))
    await notifier.send(notification())
    threads = [post.get("thread_ts") for post in site.fake.posts()]
    first, second = site.fake.posted_ts[0], site.fake.posted_ts[2]
    assert threads == [None, first, None, second, first]


async def test_concurrent_sends_for_two_jobs_create_two_threads(site: Site, context: NotifierContext) -> None:
    notifier = token_notifier(site.server, context)
    await asyncio.gather(notifier.send(notification()), notifier.send(notification(other_job())))
    replies = [post for post in site.fake.posts() if "thread_ts" in post]
    assert len(site.fake.posts()) == 4
    assert len({reply["thread_ts"] for reply in replies}) == 2


def other_job() -> JobSummary:
    return summary(job_name="terminal-bench weekly").model_copy(update={"job_id": "bmj_other"})


async def test_an_older_notification_does_not_roll_the_root_back(site: Site, context: NotifierContext) -> None:
    notifier = token_notifier(site.server, context)
    await notifier.send(notification(summary(n_done=250), created_ms=T0_MS + 60_000))
    await notifier.send(notification(summary(n_done=100), created_ms=T0_MS))  # a late retry
    assert site.fake.updates() == []
    assert len({post["thread_ts"] for post in site.fake.posts() if "thread_ts" in post}) == 1


@pytest.mark.parametrize("overrides", [{"thread": False}, {}])
async def test_plain_posts_without_threads_or_without_a_job(
    site: Site, context: NotifierContext, overrides: dict[str, Any]
) -> None:
    sent = notification(with_job=bool(overrides))  # thread: false with a job; or threads on, but no job
    await token_notifier(site.server, context, **overrides).send(sent)
    [post] = site.fake.posts()
    assert post["channel"] == "#benchmarks"
    assert "thread_ts" not in post
    assert post["blocks"] == message_blocks(sent)
    assert site.fake.updates() == []


# --- token mode: errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error_type", "reason"),
    [
        (Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "7"}), RetryableSendError, "rate_limited"),
        (Reply(200, {"ok": False, "error": "ratelimited"}, {"Retry-After": "3"}), RetryableSendError, "rate_limited"),
        (Reply(500, "<html>oops</html>"), RetryableSendError, "server_error"),
        (Reply(502, {"ok": False, "error": "bad_gateway"}), RetryableSendError, "server_error"),
        (Reply(200, {"ok": False, "error": "internal_error"}), RetryableSendError, "server_error"),
        (Reply(200, {"ok": False, "error": "request_timeout"}), RetryableSendError, "server_error"),
        (Reply(200, {"ok": False, "error": "invalid_auth"}), PermanentSendError, "auth"),
        (Reply(200, {"ok": False, "error": "token_revoked"}), PermanentSendError, "auth"),
        (Reply(200, {"ok": False, "error": "missing_scope"}), PermanentSendError, "auth"),
        (Reply(200, {"ok": False, "error": "channel_not_found"}), PermanentSendError, "client_error"),
        (Reply(200, {"ok": False, "error": "is_archived"}), PermanentSendError, "client_error"),
        (Reply(200, {"ok": False, "error": "invalid_blocks"}), PermanentSendError, "client_error"),
    ],
)
async def test_web_api_errors_are_classified(
    site: Site,
    context: NotifierContext,
    reply: Reply,
    error_type: type[SendError],
    reason: str,
) -> None:
    site.fake.then(reply)
    with pytest.raises(error_type) as raised:
        await token_notifier(site.server, context, thread=False).send(notification())
    assert type(raised.value) is error_type
    assert raised.value.reason == reason
    if isinstance(reply.body, dict):
        assert reply.body["error"] in str(raised.value)
    if "Retry-After" in reply.headers:
        assert isinstance(raised.value, RetryableSendError)
        assert raised.value.retry_after_s == float(reply.headers["Retry-After"])


async def test_a_failed_reply_keeps_the_root_for_the_retry(site: Site, context: NotifierContext) -> None:
    notifier = token_notifier(site.server, context)
    site.fake.then(Reply(200, {"ok": True, "channel": CHANNEL_ID, "ts": "1788228000.000001"}), Reply(503, "busy"))
    site.fake.live_ts.add("1788228000.000001")
    with pytest.raises(RetryableSendError):
        await notifier.send(notification())
    await notifier.send(notification())
    threads = [post.get("thread_ts") for post in site.fake.posts()]
    assert threads == [None, "1788228000.000001", "1788228000.000001"]


async def test_no_answer_in_time_is_a_retryable_timeout(site: Site, context: NotifierContext) -> None:
    site.fake.then(Reply(200, {"ok": True}, delay_s=1.0))
    notifier = SlackNotifier("team-slack", token_config(site.server, thread=False), context, timeout_s=0.05)
    with pytest.raises(RetryableSendError) as raised:
        await notifier.send(notification())
    assert raised.value.reason == "timeout"


async def test_nobody_listening_is_a_retryable_connection_error(context: NotifierContext) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    notifier = SlackNotifier("team-slack", SlackConfig(type="slack", webhook_url=url), context)
    with pytest.raises(RetryableSendError) as raised:
        await notifier.send(notification())
    assert raised.value.reason == "connection"
    assert WEBHOOK_PATH not in str(raised.value)


async def test_secrets_never_appear_in_errors_reprs_or_logs(
    site: Site, context: NotifierContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_path = WEBHOOK_PATH.rsplit("/", 1)[1]
    web = token_notifier(site.server, context, thread=False)
    hook = webhook_notifier(site.server, context)
    site.fake.then(
        Reply(200, {"ok": False, "error": "invalid_auth"}),
        Reply(500, "oops"),
        Reply(410, "channel_is_archived"),
        Reply(429, "rate_limited"),
    )
    errors: list[SendError] = []
    for notifier in (web, web, hook, hook):
        with pytest.raises(SendError) as raised:
            await notifier.send(notification())
        errors.append(raised.value)
    await hook.send(notification())  # a success logs nothing secret either
    # The fake's own access log names the path it was asked for: only the client side's records count.
    logged = [record.getMessage() for record in caplog.records if record.name != "aiohttp.access"]
    shown = [text for error in errors for text in printed_chain(error)] + [repr(web), repr(hook), *logged]
    assert all(TOKEN not in text and secret_path not in text for text in shown)


def printed_chain(error: BaseException) -> Iterator[str]:
    """str and repr of an error and of every exception a traceback would print with it."""
    current: BaseException | None = error
    while current is not None:
        yield from (str(current), repr(current))
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


# --- rendering ------------------------------------------------------------------------------------------------


def test_a_huge_job_stays_within_slack_limits() -> None:
    agents = tuple(agent(f"agent-{i:03d} " + "x" * 40, index=i) for i in range(300))
    failures = tuple(failure_group(f"Error{i:03d}" + "&" * 80, 1000 - i, message="<&>" * 200) for i in range(200))
    long_title = "swe-bench & friends " * 30
    big = notification(summary(agents=agents, failures=failures, job_name="j" * 500), title=long_title)
    for blocks in (message_blocks(big), root_blocks(big)):
        assert len(blocks) <= MAX_BLOCKS
        assert blocks[0]["type"] == "header"
        assert len(blocks[0]["text"]["text"]) <= HEADER_MAX_CHARS
        assert all(len(block["text"]["text"]) <= SECTION_MAX_CHARS for block in blocks if block["type"] == "section")
        assert all(len(block.get("fields", ())) <= 10 for block in blocks)
        assert all(len(block.get("elements", ())) <= 10 for block in blocks)
        sections = "\n".join(block["text"]["text"] for block in blocks if block["type"] == "section")
        assert re.search(r"… and \d+ more agents", sections)
    sections = "\n".join(b["text"]["text"] for b in message_blocks(big) if b["type"] == "section")
    assert re.search(r"… and \d+ more exception types", sections)
    assert message_blocks(big)[0]["text"]["text"].endswith("…")
    assert len(message_text(big)) <= 3000


def test_title_is_cut_to_the_header_limit_without_breaking_an_entity() -> None:
    header = message_blocks(notification(title="&" * 200))[0]["text"]["text"]
    assert len(header) <= HEADER_MAX_CHARS
    assert header.endswith("&amp;…")


_OUR_MARKUP = re.compile(r"<(?:https?://[^|<>\s]+\|[^<>]*|!date\^\d+\^[^|<>]*\|[^<>]*)>")


@pytest.mark.parametrize("render", [message_blocks, root_blocks])
def test_api_strings_are_escaped_everywhere(render: Any) -> None:
    hostile = summary(
        job_name="<!channel> nightly & co",
        agents=(agent("<@U0123> agent", index=1),),
        failures=(failure_group("Error<!here>", 3, message="expected a > b && c < d"),),
    )
    sent = notification(hostile, title="<!channel> nightly & co: failed", text="<!channel>: a > b & c")
    for text in [*texts(render(sent)), message_text(sent), root_text(sent)]:
        bare = _OUR_MARKUP.sub("", text)
        assert "<" not in bare and ">" not in bare, text
        assert not re.search(r"&(?!amp;|lt;|gt;)", bare), text
    joined = "\n".join(texts(render(sent)))
    assert "&lt;!channel&gt; nightly &amp; co" in joined
    if render is message_blocks:
        assert "expected a &gt; b &amp;&amp; c &lt; d" in joined
        assert "&lt;!channel&gt;: a &gt; b &amp; c" in message_text(sent)


def test_a_resolve_says_it_is_resolved() -> None:
    resolved = notification(summary(state="completed", n_done=300), action="resolve", title="failure rate is back")
    blocks = message_blocks(resolved)
    assert blocks[0]["text"]["text"] == "✅ Resolved: failure rate is back"
    assert "resolved" in blocks[1]["elements"][0]["text"]
    assert message_text(resolved).startswith("Resolved: failure rate is back")


def test_agent_rows_show_model_score_counts_and_duration() -> None:
    blocks = message_blocks(notification())
    agents = next(b["text"]["text"] for b in blocks if b.get("text", {}).get("text", "").startswith("*Agents*"))
    assert "claude-sonnet-4 · score *0.812*" in agents
    assert "score *n/a*" in agents
    assert "40 completed / 2 failed / 1 timed out · 23m 05s" in agents
    assert f"<{DASHBOARD}/benchmarks/custom/bmd_swe/runs/" in agents


def test_failures_show_counts_and_three_linked_examples() -> None:
    blocks = message_blocks(notification())
    failures = next(b["text"]["text"] for b in blocks if b.get("text", {}).get("text", "").startswith("*Failures*"))
    assert failures.startswith("*Failures* by exception type (2): 1 setup, 5 agent\n")
    assert "*TimeoutError* × 5 (agent) — Command exited with status 1" in failures
    assert failures.count(f"<{DASHBOARD}/scenarios/") == 4  # three of TimeoutError, one of AssertionError
    assert "and 2 more" in failures


@pytest.mark.parametrize(
    ("duration_ms", "shown"),
    [(None, "n/a"), (42_000, "42s"), (1_385_000, "23m 05s"), (7_385_000, "2h 03m 05s"), (0, "0s")],
)
def test_durations_read_like_people_write_them(duration_ms: int | None, shown: str) -> None:
    assert duration_text(duration_ms) == shown
