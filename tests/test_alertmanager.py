"""The Alertmanager notifier against a real Alertmanager (Debian's prometheus-alertmanager, started once for the
module): alerts arrive with their labels and times (its API and amtool agree), its silences suppress them,
resolutions end them, and open incidents are re-posted. Errors and secrets against a local receiver."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer

from notifiers.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from notifiers.protocol import NotifierContext, PermanentSendError, RetryableSendError
from notifiers.refresh import Refresher
from tests.alertmanager import RunningAlertmanager, running_alertmanager
from tests.fakes.base import FakeServer, Reply
from tests.lifecycle import API_KEY, add_jobs
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.config.loader import ConfigError
from watcher.core.clock import ManualClock
from watcher.core.events import JobFinished, ScenarioFailed
from watcher.core.models import FailureReason
from watcher.core.notification import Notification
from watcher.core.summary import JobSummary
from watcher.simulator import Faults, Simulator, create_app
from watcher.store.protocol import NamespacedState
from watcher.store.sqlite import SQLiteStore

ServerFactory = Callable[..., Awaitable[TestServer]]

STATUS_URL = "http://benchwatch.example:9108/"
INTERVAL_MS = 60_000


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAlertmanager]:
    with running_alertmanager(tmp_path_factory.mktemp("alertmanager")) as running:
        yield running


@pytest.fixture
def clock() -> ManualClock:
    """Near real time: Alertmanager compares `endsAt` with its own clock."""
    return ManualClock(start_ms=int(time.time() * 1000) // 1000 * 1000)


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[NamespacedState]:
    async with SQLiteStore(tmp_path / "state.db") as store:
        yield NamespacedState(store, "notifier.am")


def context(session: aiohttp.ClientSession, state: NamespacedState, *incident_rules: str) -> NotifierContext:
    return NotifierContext(session, state, status_url=STATUS_URL, incident_rules=frozenset(incident_rules))


def notifier(url: str, ctx: NotifierContext, clock: ManualClock, **settings: Any) -> AlertmanagerNotifier:
    config = AlertmanagerConfig.model_validate({"type": "alertmanager", "url": url} | settings)
    return AlertmanagerNotifier("am", config, ctx, clock=clock)


def summary(job_id: str = "bmj_1") -> JobSummary:
    return JobSummary(
        job_id=job_id,
        job_name="nightly-7",
        state="failed",
        failure_reason=None,
        failure_rate=0.5,
        scores={},
        min_score=None,
        agents=(),
        failures=(),
        dashboard_url="https://platform.runloop.ai",
        benchmark_id="bm_1",
        benchmark_name="swe-smith",
    )


def trigger(rule: str, created_ms: int, *, job_id: str = "bmj_1", title: str = "nightly-7 failed") -> Notification:
    failed = ScenarioFailed(
        id=f"ev_{rule}_{created_ms}",
        job_id=job_id,
        job_name="nightly-7",
        at_ms=created_ms,
        benchmark_run_id="bmr_1",
        agent_name="claude-code",
        scenario_definition_id="scn_1",
        scenario_name="s1",
        scenario_run_id=None,
        failure_reason=FailureReason(exception_type="AgentError", exception_message="exit 1"),
        duration_ms=5,
    )
    return Notification(
        id=f"nt_{rule}_{created_ms}",
        rule=rule,
        notifier="am",
        severity="critical",
        group_key=job_id,
        dedup_key=f"{rule}:{job_id}",
        created_ms=created_ms,
        title=title,
        text="Job nightly-7 failed.\n2 of 4 scenarios failed.",
        events=(failed,),
        summary=summary(job_id),
    )


def resolution(of: Notification, created_ms: int) -> Notification:
    finished = JobFinished(
        id=f"ev_ok_{created_ms}",
        job_id=of.events[0].job_id,
        job_name="nightly-7",
        at_ms=created_ms,
        from_state="running",
        state="completed",
        failure_reason=None,
        outcomes=(),
    )
    return Notification(
        id=f"nt_ok_{created_ms}",
        rule="job-ok",
        notifier="am",
        severity="info",
        action="resolve",
        group_key=of.dedup_key,
        dedup_key=of.dedup_key,
        created_ms=created_ms,
        title="nightly-7 completed",
        text="",
        events=(finished,),
        summary=None,
    )


def at(timestamp: str) -> int:
    """Alertmanager's RFC 3339 time as ms since the epoch."""
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)


async def test_an_alert_arrives_with_its_labels_annotations_and_times(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    am = notifier(alertmanager.url, context(session, state, "arrives"), clock, labels={"team": "ml"})
    opened = trigger("arrives", clock.now_ms() - 5_000)

    await am.send(opened)

    [alert] = alertmanager.alerts("arrives")
    assert alert["labels"] == {
        "alertname": "arrives",
        "dedup_key": "arrives:bmj_1",
        "severity": "critical",
        "job_id": "bmj_1",
        "job_name": "nightly-7",
        "benchmark": "swe-smith",
        "agent": "claude-code",
        "team": "ml",
    }
    assert alert["annotations"] == {
        "summary": "nightly-7 failed",
        "description": "Job nightly-7 failed.\n2 of 4 scenarios failed.",
    }
    assert alert["generatorURL"] == STATUS_URL
    assert at(alert["startsAt"]) == opened.created_ms
    assert at(alert["endsAt"]) == clock.now_ms() + 4 * INTERVAL_MS  # outlives three missed re-posts
    assert alert["status"]["state"] == "active"
    [listed] = alertmanager.amtool_alerts("arrives")  # amtool sees the same alert
    assert listed["labels"] == alert["labels"] and listed["fingerprint"] == alert["fingerprint"]


async def test_an_alertmanager_silence_suppresses_it(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    am = notifier(alertmanager.url, context(session, state, "silenced"), clock)
    await am.send(trigger("silenced", clock.now_ms()))

    silence_id = alertmanager.amtool(
        "silence", "add", "alertname=silenced", "job_id=bmj_1", "--comment=runner upgrade", "--author=test",
        "--duration=1h",
    ).strip()  # fmt: skip

    [alert] = alertmanager.alerts("silenced")
    assert alert["status"] == {"state": "suppressed", "silencedBy": [silence_id], "inhibitedBy": []}
    assert alertmanager.amtool_alerts("silenced") == []  # amtool lists active alerts only by default
    [suppressed] = alertmanager.amtool_alerts("silenced", "--silenced")
    assert suppressed["status"]["silencedBy"] == [silence_id]
    # Re-posting keeps the alert, and the silence keeps holding it.
    clock.advance(INTERVAL_MS)
    assert await am.refresh() == 1
    assert alertmanager.alerts("silenced")[0]["status"]["state"] == "suppressed"


async def test_a_resolution_ends_it(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    am = notifier(alertmanager.url, context(session, state, "resolved"), clock)
    opened = trigger("resolved", clock.now_ms() - 1000)
    await am.send(opened)
    assert len(alertmanager.alerts("resolved")) == 1

    await am.send(resolution(opened, clock.now_ms()))

    assert alertmanager.alerts("resolved") == []  # Alertmanager lists no resolved alert
    assert alertmanager.amtool_alerts("resolved") == []
    clock.advance(INTERVAL_MS)
    assert await am.refresh() == 0  # a closed incident is not re-posted
    assert alertmanager.alerts("resolved") == []


async def test_an_open_incident_is_reposted_with_a_later_end_and_a_later_trigger_keeps_its_identity(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    am = notifier(alertmanager.url, context(session, state, "reposted"), clock, repost_interval="30s")
    opened = trigger("reposted", clock.now_ms())
    await am.send(opened)
    first = alertmanager.alerts("reposted")[0]

    clock.advance(30_000)
    assert await Refresher(clock).refresh_due({"am": am}) == 1

    [again] = alertmanager.alerts("reposted")
    assert at(again["endsAt"]) == clock.now_ms() + 4 * 30_000
    assert (again["fingerprint"], again["startsAt"]) == (first["fingerprint"], first["startsAt"])
    # A later notification of the same incident updates the text, not the alert's identity or start.
    clock.advance(1000)
    await am.send(trigger("reposted", clock.now_ms(), title="nightly-7: 3 more failures"))
    [updated] = alertmanager.alerts("reposted")
    assert (updated["fingerprint"], updated["startsAt"]) == (first["fingerprint"], first["startsAt"])
    assert updated["annotations"]["summary"] == "nightly-7: 3 more failures"


async def test_an_alert_of_a_rule_nothing_resolves_is_posted_once_and_ends_by_itself(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    am = notifier(alertmanager.url, context(session, state, "some-other-rule"), clock)
    await am.send(trigger("one-off", clock.now_ms()))
    posted = alertmanager.alerts("one-off")[0]

    clock.advance(INTERVAL_MS)
    assert await am.refresh() == 0
    assert alertmanager.alerts("one-off")[0]["endsAt"] == posted["endsAt"]  # not prolonged
    assert "one-off:bmj_1" in await state.rows()
    clock.advance(4 * INTERVAL_MS)  # past its end: forgotten
    await am.refresh()
    assert "one-off:bmj_1" not in await state.rows()


async def test_a_resolution_sent_before_its_trigger_keeps_the_late_trigger_out(
    alertmanager: RunningAlertmanager, session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    """After an outage, a trigger and its resolution may go out in either order: the incident ended all the same."""
    am = notifier(alertmanager.url, context(session, state, "late"), clock)
    opened = trigger("late", clock.now_ms() - 10_000)

    await am.send(resolution(opened, clock.now_ms() - 5_000))
    await am.send(opened)

    assert alertmanager.alerts("late") == []
    clock.advance(INTERVAL_MS)
    await am.refresh()
    assert alertmanager.alerts("late") == []
    # The same incident opening again afterwards is a new alert.
    await am.send(trigger("late", clock.now_ms()))
    assert len(alertmanager.alerts("late")) == 1


# ---- against a local receiver: auth, classified errors, secrets ----


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> tuple[FakeServer, str]:
    fake = FakeServer()
    server = await aiohttp_server(fake.app())
    return fake, str(server.make_url("")).rstrip("/")


async def test_basic_auth_and_bearer_token_are_sent_and_never_shown(
    receiver: tuple[FakeServer, str], session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> None:
    fake, url = receiver
    basic = notifier(url, context(session, state), clock, username="bw", password="s3cret-pass")
    bearer = notifier(url + "/am/", context(session, state), clock, bearer_token="t0ken-s3cret")

    await basic.send(trigger("auth", clock.now_ms()))
    await bearer.send(trigger("auth", clock.now_ms(), job_id="bmj_2"))

    first, second = fake.requests
    assert first.path == "/api/v2/alerts" and second.path == "/am/api/v2/alerts"
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(b"bw:s3cret-pass").decode()
    assert second.headers["Authorization"] == "Bearer t0ken-s3cret"
    assert first.json()[0]["labels"]["alertname"] == "auth"
    fake.then(Reply(401))
    with pytest.raises(PermanentSendError) as refused:
        await bearer.send(trigger("auth", clock.now_ms(), job_id="bmj_3"))
    assert refused.value.reason == "auth"
    shown = [str(refused.value), repr(basic), repr(bearer), basic._config.destination(), repr(bearer._config)]
    assert not any("s3cret" in text for text in shown), shown
    assert "basic auth" in basic._config.destination() and "bearer token" in bearer._config.destination()


@pytest.fixture
def flaky(
    receiver: tuple[FakeServer, str], session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock
) -> tuple[FakeServer, AlertmanagerNotifier]:
    fake, url = receiver
    return fake, notifier(url, context(session, state, "flaky"), clock)


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        (Reply(503), RetryableSendError, "server_error"),
        (Reply(429, headers={"Retry-After": "7"}), RetryableSendError, "rate_limited"),
        (Reply(400, {"code": 400, "message": "start time after end time"}), PermanentSendError, "client_error"),
    ],
)
async def test_failures_are_classified_and_nothing_is_remembered(
    flaky: tuple[FakeServer, AlertmanagerNotifier], state: NamespacedState, reply: Reply, error: type[Exception],
    reason: str,
) -> None:  # fmt: skip
    fake, am = flaky
    fake.then(reply)
    with pytest.raises(error) as failed:
        await am.send(trigger("flaky", 1_000_000))
    assert failed.value.reason == reason  # type: ignore[attr-defined]
    assert await state.rows() == {}  # a trigger that did not arrive opens nothing to re-post


async def test_an_alertmanager_that_is_down_is_a_retryable_connection_error_and_refresh_logs_it_once(
    session: aiohttp.ClientSession, state: NamespacedState, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.alertmanager import _free_port

    url = f"http://127.0.0.1:{_free_port()}"
    am = notifier(url, context(session, state, "down"), clock)
    with pytest.raises(RetryableSendError) as failed:
        await am.send(trigger("down", clock.now_ms()))
    assert failed.value.reason == "connection"
    # An open incident whose re-post fails: logged once per outage, tried again at the next interval.
    await state.put("down:bmj_1", '{"rule":"down","labels":{"alertname":"down"},"annotations":{},'
                    f'"starts_ms":{clock.now_ms()},"ends_ms":{clock.now_ms()}}}')  # fmt: skip
    refresher = Refresher(clock)
    with caplog.at_level(logging.WARNING, logger="benchwatch.delivery"):
        assert await refresher.refresh_due({"am": am}) == 0
        clock.advance(INTERVAL_MS)
        assert await refresher.refresh_due({"am": am}) == 0
    failures = [record.getMessage() for record in caplog.records if "keeps open failed" in record.getMessage()]
    assert len(failures) == 1 and "connection failed" in failures[0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "alertmanager:9093"}, "url: expected the Alertmanager's http:// or https:// address"),
        ({"url": "http://bw:pw-s3cret@am:9093"}, "url: credentials go in username and password (secrets), not in"),
        ({"url": "http://am:9093/api/v2/alerts"}, "url: give the Alertmanager's address only: benchwatch adds"),
        ({"labels": {"team-name": "ml"}}, "labels: invalid label name 'team-name'"),
        ({"labels": {"__meta": "x"}}, "labels: invalid label name '__meta'"),
        ({"labels": {"team": ""}}, "labels: label 'team' is empty"),
        ({"username": "bw"}, "basic auth needs both username and password"),
        ({"username": "bw", "password": "pw-s3cret", "bearer_token": "t"}, "give either username and password, or"),
        ({"repost_interval": "500ms"}, "repost_interval: must be at least 1s"),
    ],
)
def test_config_mistakes_are_refused_at_their_line_without_secrets(
    tmp_path: Path, settings: dict[str, Any], message: str
) -> None:
    path = tmp_path / "benchwatch.yaml"
    am = {"type": "alertmanager", "url": "http://am:9093"} | settings
    path.write_text(yaml.safe_dump({"notifiers": {"am": am}}))
    with pytest.raises(ConfigError) as refused:
        load_config(path, {})
    assert message in str(refused.value)
    assert str(path) in str(refused.value) and "s3cret" not in str(refused.value)


# ---- the service: an API outage opens an alert on the real Alertmanager, the recovery ends it ----


async def test_the_service_alerts_on_an_api_outage_reposts_it_and_ends_it_on_recovery(
    alertmanager: RunningAlertmanager, aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    # Behind real time, by less than an alert's lifetime: what the service posts as open is open for Alertmanager,
    # and the end of the outage (in the service's past) is over for it too.
    clock = ManualClock(start_ms=int(time.time() * 1000) - 120_000)
    sim = Simulator(seed=3, clock=clock, api_key=API_KEY)
    add_jobs(sim)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        f"runloop: {{base_url: '{api}', api_key: {API_KEY}}}\n"
        "watch: {discover: {name: 'e2e-*'}, poll_interval: 1s, api_unreachable_after: 3s, max_requests_per_s: null}\n"
        "state: {path: ./state.db}\nhttp: {port: 0, external_url: 'https://benchwatch.example/'}\n"
        f"notifiers:\n  am: {{type: alertmanager, url: '{alertmanager.url}', labels: {{team: ml}}}}\n"
        "rules:\n"
        "  - {name: outage, on: watcher.api_unreachable, notify: am, severity: critical}\n"
        "  - {name: outage-over, on: watcher.api_recovered, resolves: outage, notify: am}\n"
    )

    async def sleep(seconds: float) -> None:
        clock.advance(round(seconds * 1000))

    service = Service(load_config(config), clock=clock, sleep=sleep)

    async def step() -> None:
        started_ms = clock.now_ms()
        await service.poll_once()
        await service.flush_timers()
        await service.drain()
        clock.set(max(clock.now_ms(), started_ms + 1000))

    async with service.started():
        await step()
        sim.set_faults(Faults(rate_500=1.0))
        for _ in range(30):
            await step()
            if alertmanager.alerts("outage"):
                break
        [alert] = alertmanager.alerts("outage")
        assert alert["labels"] == {"alertname": "outage", "dedup_key": "outage:", "severity": "critical", "team": "ml"}
        assert alert["generatorURL"] == "https://benchwatch.example/"
        assert "unreachable" in alert["annotations"]["summary"].lower()
        assert await service.refresh_notifiers() == 1  # open: re-posted (the first refresh is at once)
        assert await service.refresh_notifiers() == 0  # ... then once per repost_interval
        sim.set_faults(Faults())
        for _ in range(30):
            await step()
            if not alertmanager.alerts("outage"):
                break
        assert alertmanager.alerts("outage") == []
    assert clock.now_ms() < time.time() * 1000  # the service's clock stayed behind Alertmanager's
