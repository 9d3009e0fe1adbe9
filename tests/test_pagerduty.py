"""The PagerDuty notifier against a fake Events API v2 that validates events and tracks incidents."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from notifiers.pagerduty import PagerDutyConfig, PagerDutyNotifier
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError, SendError
from tests.fakes.base import Reply
from tests.fakes.pagerduty import FakePagerDuty
from watcher.core.events import Counters, ScenarioFailed
from watcher.core.failureclass import FailureCounts
from watcher.core.models import FailureReason
from watcher.core.notification import Notification
from watcher.core.summary import AgentSummary, FailureExample, FailureGroup, JobSummary

ServerFactory = Callable[..., Awaitable[TestServer]]

ROUTING_KEY = "R0UT1NGKEY0SECRET0000000000000AB"
DASHBOARD = "https://platform.runloop.ai"
T0 = 1_788_228_000_000


@pytest.fixture
async def pagerduty(aiohttp_server: ServerFactory) -> tuple[FakePagerDuty, str]:
    fake = FakePagerDuty()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("/v2/enqueue"))


def notifier(url: str, context: NotifierContext, routing_key: str = ROUTING_KEY) -> PagerDutyNotifier:
    config = PagerDutyConfig.model_validate({"type": "pagerduty", "routing_key": routing_key, "url": url})
    return PagerDutyNotifier("pd", config, context)


def agent(n: int) -> AgentSummary:
    return AgentSummary(
        benchmark_run_id=f"bmr_{n}",
        agent_name=f"agent-{n}",
        model_name="m",
        finished=True,
        score=0.5 + n / 100,
        average_score=0.5 + n / 100,
        n_completed=8,
        n_failed=2,
        n_timeout=0,
        duration_ms=1000,
        url=f"{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_{n}",
    )


def summary(agents: int = 2) -> JobSummary:
    return JobSummary(
        **dict(Counters(n_completed=16, n_failed=4, n_done=20, n_expected=24)),
        job_id="bmj_1",
        job_name="nightly-7",
        state="running",
        failure_reason=None,
        failure_rate=0.2,
        scores={"agent-1": 0.51, "agent-2": 0.52},
        min_score=0.51,
        agents=tuple(agent(n) for n in range(1, agents + 1)),
        failures=(
            FailureGroup(
                exception_type="AgentError",
                count=4,
                examples=(FailureExample(scenario_name="s1", agent_name="agent-1", message="exit 1", url=None),),
            ),
        ),
        failures_by_class=FailureCounts(agent=4),
        dashboard_url=DASHBOARD,
    )


def notification(**overrides: Any) -> Notification:
    failed = ScenarioFailed(
        id="ev_1",
        job_id="bmj_1",
        job_name="nightly-7",
        at_ms=T0,
        benchmark_run_id="bmr_1",
        agent_name="agent-1",
        scenario_definition_id="scn_1",
        scenario_name="s1",
        scenario_run_id=None,
        failure_reason=FailureReason(exception_type="AgentError", exception_message="exit 1"),
        duration_ms=5,
    )
    fields: dict[str, Any] = {
        "id": "nt_0123456789abcdef",
        "rule": "failures",
        "notifier": "pd",
        "severity": "critical",
        "group_key": "bmj_1",
        "dedup_key": "failures:bmj_1",
        "created_ms": T0,
        "title": "Job nightly-7: 4 scenarios failed",
        "text": "4 of 20 scenarios failed.",
        "events": (failed,),
        "summary": summary(),
    }
    return Notification.model_validate(fields | overrides)


async def test_a_trigger_opens_an_incident_with_the_full_payload(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    await notifier(url, context).send(notification())

    assert fake.incidents["failures:bmj_1"].status == "triggered"
    event = fake.requests[0].json()
    assert fake.requests[0].headers["Content-Type"] == "application/json"
    assert list(event) == ["routing_key", "event_action", "dedup_key", "payload", "client", "client_url", "links"]
    assert (event["routing_key"], event["event_action"], event["dedup_key"]) == (
        ROUTING_KEY,
        "trigger",
        "failures:bmj_1",
    )
    assert (event["client"], event["client_url"]) == ("benchwatch", DASHBOARD)
    assert event["links"] == [
        {"href": f"{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_1", "text": "agent-1 run"},
        {"href": f"{DASHBOARD}/benchmarks/custom/bm_1/runs/bmr_2", "text": "agent-2 run"},
    ]
    payload = event["payload"]
    details = payload.pop("custom_details")
    assert payload == {
        "summary": "Job nightly-7: 4 scenarios failed",
        "source": "nightly-7",
        "severity": "critical",
        "timestamp": "2026-09-01T02:00:00.000Z",
        "component": "agent-1",
        "group": "nightly-7",
        "class": "scenario.failed",
    }
    assert details["state"] == "running" and details["text"] == "4 of 20 scenarios failed."
    assert details["counters"] == {
        "n_completed": 16,
        "n_failed": 4,
        "n_timeout": 0,
        "n_canceled": 0,
        "n_done": 20,
        "n_expected": 24,
    }
    assert (details["failure_rate"], details["scores"]) == (0.2, {"agent-1": 0.51, "agent-2": 0.52})
    assert details["failures_by_class"] == {"setup": 0, "timeout": 0, "agent": 4}
    assert details["top_failures"] == [
        {
            "exception_type": "AgentError",
            "failure_class": "agent",
            "count": 4,
            "examples": [{"scenario": "s1", "agent": "agent-1", "message": "exit 1"}],
        }
    ]


@pytest.mark.parametrize("severity", ["info", "warning", "critical"])
async def test_severities_keep_their_names(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext, severity: str
) -> None:
    fake, url = pagerduty
    await notifier(url, context).send(notification(severity=severity))

    assert fake.requests[0].json()["payload"]["severity"] == severity


async def test_a_5000_char_title_is_cut_to_what_pagerduty_takes(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    await notifier(url, context).send(notification(title="x" * 5000))

    sent = fake.requests[0].json()["payload"]["summary"]
    assert len(sent) == 1024 and sent.endswith("…")
    assert fake.incidents["failures:bmj_1"].status == "triggered"


async def test_at_most_five_run_links(pagerduty: tuple[FakePagerDuty, str], context: NotifierContext) -> None:
    fake, url = pagerduty
    await notifier(url, context).send(notification(summary=summary(agents=8)))

    assert [link["text"] for link in fake.requests[0].json()["links"]] == [f"agent-{n} run" for n in range(1, 6)]


async def test_without_a_summary_the_job_comes_from_the_events(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    await notifier(url, context).send(notification(summary=None))
    await notifier(url, context).send(notification(summary=None, events=(), dedup_key="other"))

    with_events, bare = (request.json() for request in fake.requests)
    assert "links" not in with_events and with_events["payload"]["source"] == "nightly-7"
    assert bare["payload"]["source"] == "benchwatch" and bare["payload"]["class"] == "notification"
    assert bare["payload"]["custom_details"] == {
        "rule": "failures",
        "notification_id": "nt_0123456789abcdef",
        "text": "4 of 20 scenarios failed.",
    }


async def test_a_resolve_closes_the_incident_and_says_nothing_else(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    pd = notifier(url, context)
    await pd.send(notification())
    await pd.send(notification(id="nt_resolve", action="resolve", severity="info"))

    assert fake.requests[1].json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "failures:bmj_1",
    }
    assert fake.incidents["failures:bmj_1"].status == "resolved"


async def test_a_long_dedup_key_is_shortened_the_same_way_for_trigger_and_resolve(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    key = "failures:" + "k" * 400
    await notifier(url, context).send(notification(dedup_key=key))
    await notifier(url, context).send(notification(dedup_key=key, action="resolve"))

    (incident,) = fake.incidents.values()
    assert len(incident.dedup_key) <= 255 and incident.status == "resolved"


async def test_an_event_the_api_rejects_is_permanent(
    pagerduty: tuple[FakePagerDuty, str], context: NotifierContext
) -> None:
    fake, url = pagerduty
    with pytest.raises(PermanentSendError) as caught:
        await notifier(url, context, routing_key="").send(notification())

    assert caught.value.reason == "client_error" and not caught.value.retryable
    assert fake.incidents == {}


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(400, {"status": "invalid event", "errors": ["x"]}), (PermanentSendError, "client_error", None)),
        (Reply(429, headers={"Retry-After": "12"}), (RetryableSendError, "rate_limited", 12.0)),
        (Reply(429), (RetryableSendError, "rate_limited", None)),
        (Reply(500), (RetryableSendError, "server_error", None)),
        (Reply(503), (RetryableSendError, "server_error", None)),
    ],
)
async def test_statuses_are_classified(
    pagerduty: tuple[FakePagerDuty, str],
    context: NotifierContext,
    reply: Reply,
    expected: tuple[type[Exception], str, float | None],
) -> None:
    fake, url = pagerduty
    fake.then(reply)
    with pytest.raises(SendError) as caught:
        await notifier(url, context).send(notification())

    assert (type(caught.value), caught.value.reason, getattr(caught.value, "retry_after_s", None)) == expected
    assert fake.incidents == {}


async def test_the_routing_key_never_shows(pagerduty: tuple[FakePagerDuty, str], context: NotifierContext) -> None:
    fake, url = pagerduty
    fake.then(Reply(500))
    pd = notifier(url + "?token=query-SECRET", context)
    with pytest.raises(RetryableSendError) as caught:
        await pd.send(notification())

    host_and_path = url.removeprefix("http://")
    assert str(caught.value) == f"pagerduty POST {host_and_path}: HTTP 500"
    assert repr(pd) == f"PagerDutyNotifier(name='pd', url='{host_and_path}')"
    for text in (str(caught.value), repr(caught.value), repr(pd)):
        assert ROUTING_KEY not in text and "SECRET" not in text
