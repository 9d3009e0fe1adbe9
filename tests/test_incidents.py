"""Incidents that end: a rule nothing resolves leaves its incident open only while it can still need someone — until
its jobs end (and the notice was sent), or, about no job, for its `resolve_after` — on a clock the test moves."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.engine import RuleState
from rules.incidents import OpenIncident
from rules.persist import INCIDENTS, apply_row, load_rule_state, rows_for
from tests.running import running_service
from tests.test_rules import MINUTE, T0, config, envelope, failed, job_finished, route, router, summary
from watcher.config.loader import ConfigError
from watcher.core.clock import ManualClock
from watcher.core.events import JobVanished, WatcherApiRecovered, WatcherApiUnreachable
from watcher.core.records import StateRow
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import Simulator
from watcher.store.sqlite import SQLiteStore

HOUR = 60 * MINUTE
TOLD = """
- {name: failures, on: scenario.failed, notify: a}
- {name: finished, on: job.finished, notify: a}
- {name: gone, on: job.vanished, notify: a}
"""


def unreachable(n: int) -> WatcherApiUnreachable:
    return WatcherApiUnreachable(**envelope("down", n, job="", name=""), since_ms=T0, failures=3, last_error="HTTP 503")


def recovered(n: int) -> WatcherApiRecovered:
    return WatcherApiRecovered(**envelope("up", n, job="", name=""), down_for_ms=HOUR)


def vanished(n: int, job: str = "bmj_1") -> JobVanished:
    return JobVanished(**envelope("vanished", n, job), last_state="running")


def test_an_incident_ends_when_its_job_does_and_not_when_another_job_does(tmp_path: Path) -> None:
    r, state = router(tmp_path, TOLD), RuleState()
    route(r, state, [failed(1)], T0)
    assert state.incidents == {("failures", "failures:bmj_1"): OpenIncident(T0, ("bmj_1",))}
    route(r, state, [job_finished(2, "completed", job="bmj_2")], T0 + MINUTE, summary(job="bmj_2"))
    assert list(state.incidents) == [("failures", "failures:bmj_1")]  # another job's end changes nothing
    (told,) = route(r, state, [job_finished(3, "failed")], T0 + 2 * MINUTE)
    assert told.rule == "finished" and state.incidents == {}  # the job ended and both notices were sent


def test_a_notice_about_a_job_that_already_ended_opens_nothing(tmp_path: Path) -> None:
    r, state = router(tmp_path, TOLD), RuleState()
    route(r, state, [job_finished(1, "completed")], T0)
    assert state.incidents == {}  # `finished:bmj_…` of completed jobs: nothing left to follow
    route(r, state, [vanished(2, job="bmj_2")], T0, summary(job="bmj_2"))
    assert state.incidents == {}


def test_a_window_that_closes_after_its_job_ended_opens_nothing(tmp_path: Path) -> None:
    r, state = router(tmp_path, "- {name: failures, on: scenario.failed, notify: a, group_wait: 10m}\n"), RuleState()
    assert route(r, state, [failed(1)], T0) == []
    assert route(r, state, [job_finished(2, "failed")], T0 + 5 * MINUTE) == []  # the window is still open
    (notice,) = r.flush_due(state, T0 + 10 * MINUTE)
    assert notice.rule == "failures" and state.incidents == {}  # the job had ended meanwhile: sent, and over


def test_a_vanished_job_ends_its_incidents(tmp_path: Path) -> None:
    r, state = router(tmp_path, TOLD), RuleState()
    route(r, state, [failed(1)], T0)
    (told,) = route(r, state, [vanished(2)], T0 + MINUTE)
    assert told.rule == "gone" and state.incidents == {}


def test_an_incident_about_no_job_closes_after_resolve_after_default_one_hour(tmp_path: Path) -> None:
    r = router(tmp_path, "- {name: api-down, on: watcher.api_unreachable, notify: a}\n")
    state = RuleState()
    route(r, state, [unreachable(1)], T0, None)
    assert state.incidents == {("api-down", "api-down:"): OpenIncident(T0, (), T0 + HOUR)}
    assert r.next_due_ms(state) == T0 + HOUR  # the timers wake for it
    r.flush_due(state, T0 + HOUR - 1)
    assert list(state.incidents) == [("api-down", "api-down:")]
    r.flush_due(state, T0 + HOUR)
    assert state.incidents == {} and r.next_due_ms(state) is None
    short = router(tmp_path, "- {name: api-down, on: watcher.api_unreachable, notify: a, resolve_after: 10m}\n")
    route(short, state, [unreachable(2)], T0, None)
    route(short, state, [unreachable(3)], T0 + 5 * MINUTE, None)  # told again: 10 minutes from the last notice
    assert state.incidents[("api-down", "api-down:")] == OpenIncident(T0, (), T0 + 15 * MINUTE)
    short.flush_due(state, T0 + 15 * MINUTE)
    assert state.incidents == {}


def test_a_resolvable_incident_waits_for_its_resolution(tmp_path: Path) -> None:
    rules = """
    - {name: api-down, on: watcher.api_unreachable, notify: a}
    - {name: api-up, on: watcher.api_recovered, resolves: api-down, notify: a}
    - {name: page, on: scenario.failed, notify: a}
    - {name: calm, on: job.finished, resolves: page, notify: a}
    """
    r, state = router(tmp_path, rules), RuleState()
    route(r, state, [unreachable(1), failed(2)], T0)
    assert state.incidents == {("api-down", "api-down:"): OpenIncident(T0), ("page", "page:bmj_1"): OpenIncident(T0)}
    r.flush_due(state, T0 + 24 * HOUR)
    assert len(state.incidents) == 2 and r.next_due_ms(state) is None  # no resolve_after: the resolution closes
    resolutions = route(r, state, [recovered(3), job_finished(4, "completed")], T0 + 25 * HOUR)
    assert [n.action for n in resolutions] == ["resolve", "resolve"] and state.incidents == {}


def test_resolve_after_is_a_positive_duration_and_not_for_a_rule_something_resolves(tmp_path: Path) -> None:
    rules = "notifiers: {a: {type: console}}\nrules:\n  - {name: down, on: watcher.api_unreachable, notify: a"
    assert config(tmp_path, rules + ", resolve_after: 2h}\n").rules[0].resolve_after_ms == 2 * HOUR
    with pytest.raises(ConfigError, match=r"rules\[0\]\.resolve_after: .*greater than 0"):
        config(tmp_path, rules + ", resolve_after: 0s}\n")
    with pytest.raises(ConfigError) as raised:
        config(tmp_path, rules + ", resolve_after: 2h}\n  - {name: up, on: watcher.api_recovered, resolves: down, "
               "notify: a}\n")  # fmt: skip
    assert (
        "benchwatch.yaml:3: rules[0].resolve_after: rule 'down' is resolved by 'up': its incidents close with the "
        "resolution, not after resolve_after (keep one of the two)"
    ) in str(raised.value)


async def test_incidents_and_ended_jobs_live_in_the_store_and_legacy_incidents_get_resolve_after(
    tmp_path: Path,
) -> None:
    digest = "- {name: digest, on: scenario.failed, notify: b, group_wait: 10m}\n"
    r = router(tmp_path, TOLD + "- {name: api-down, on: watcher.api_unreachable, notify: a}\n" + digest)
    state = RuleState()
    route(r, state, [failed(1), failed(2, job="bmj_2"), unreachable(3)], T0)
    route(r, state, [job_finished(4, "failed")], T0 + MINUTE)  # bmj_1 ends while its digest waits
    legacy = StateRow(INCIDENTS, "finished\x1ffinished:bmj_9", "1788220000000")  # as written before this change
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(state_rows=[*rows_for(state.take_changes()), legacy])
        loaded = await load_rule_state(store)
        assert loaded.incidents == {
            ("failures", "failures:bmj_2"): OpenIncident(T0, ("bmj_2",)),
            ("api-down", "api-down:"): OpenIncident(T0, (), T0 + HOUR),
            ("finished", "finished:bmj_9"): OpenIncident(1_788_220_000_000, (), 1_788_220_000_000 + HOUR),
        }
        assert loaded.groups[("digest", "bmj_1")].ended_jobs == ("bmj_1",)
        sent = r.flush_due(loaded, T0 + 10 * MINUTE)
        assert sorted(n.group_key for n in sent) == ["bmj_1", "bmj_2"]
        assert sorted(loaded.incidents) == [
            ("api-down", "api-down:"),  # 50 minutes to go
            ("digest", "digest:bmj_2"),  # bmj_2 still runs
            ("failures", "failures:bmj_2"),
        ]  # and the legacy one, given resolve_after from when it opened: over
        await store.commit(state_rows=rows_for(loaded.take_changes()))
        assert sorted((await load_rule_state(store)).incidents) == sorted(loaded.incidents)


def test_a_legacy_incident_of_a_rule_something_resolves_waits_for_its_resolution(tmp_path: Path) -> None:
    r = router(tmp_path, "- {name: page, on: scenario.failed, notify: a}\n"
                         "- {name: calm, on: job.finished, resolves: page, notify: a}\n")  # fmt: skip
    state = RuleState()
    apply_row(state, StateRow(INCIDENTS, "page\x1fpage:bmj_1", str(T0)))  # as written before this change
    assert r.next_due_ms(state) == T0 + HOUR  # the timers look at it once
    r.flush_due(state, T0 + HOUR)
    assert state.incidents == {("page", "page:bmj_1"): OpenIncident(T0)} and r.next_due_ms(state) is None
    (resolution,) = route(r, state, [job_finished(1, "completed")], T0 + 2 * HOUR)
    assert resolution.action == "resolve" and state.incidents == {}


async def test_the_service_closes_an_incident_about_no_job_after_resolve_after(tmp_path: Path) -> None:
    """On the manual clock: the running service's timer step (the scheduler's 1-second job) closes it."""
    clock = ManualClock(T0)
    rules = "rules:\n  - {name: api-down, on: watcher.api_unreachable, notify: hook, resolve_after: 30m}\n"
    async with running_service(tmp_path, Simulator(seed=3, clock=clock), clock, rules=rules) as running:
        service = running.service
        tracker: JobTracker = service.tracker
        await tracker.record([unreachable(1)], None, clock.now_ms())
        await service.flush_timers()
        assert list((await load_rule_state(service.store)).incidents) == [("api-down", "api-down:")]
        clock.advance(30 * MINUTE)
        await service.flush_timers()
        assert (await load_rule_state(service.store)).incidents == {}
