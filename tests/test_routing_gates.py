"""What stops a notification on its way out: inhibition, time intervals, `once_per` — and that their state
survives a restart through the store."""

from __future__ import annotations

import ast
import re
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rules.engine import Router, RuleState
from rules.persist import load_rule_state, rows_for
from rules.timeintervals import TimeIntervalConfig
from tests.test_rules import MINUTE, T0, config, failed, job_finished, summary
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.events import Event
from watcher.store.sqlite import SQLiteStore

NOTIFIERS = "notifiers:\n  a: {type: console}\n"


def build(tmp_path: Path, text: str) -> Router:
    loaded = config(tmp_path, NOTIFIERS + textwrap.dedent(text))
    return Router(loaded.rules, loaded.silences, inhibit=loaded.inhibit, time_intervals=loaded.time_intervals)


def sent(r: Router, state: RuleState, events: list[Event], now_ms: int) -> list[tuple[str, int]]:
    routed = r.route(state, events, summary(), now_ms)
    return [(n.rule, len(n.events)) for n in routed.notifications]


# -- inhibition -----------------------------------------------------------------------------------------------

INHIBIT = """
rules:
  - {name: job-failed, on: job.finished, where: {state: failed}, notify: a, severity: critical}
  - {name: job-ok, on: job.finished, where: {state: completed}, resolves: job-failed, notify: a}
  - {name: scenario-noise, on: scenario.failed, notify: a, group_wait: 5m}
inhibit:
  - name: job-down
    source: {rule: job-failed}
    target: {kind: "scenario.*"}
    equal: [job_id]
"""


def test_an_open_incident_inhibits_targets_of_the_same_job_only(tmp_path: Path) -> None:
    r, state = build(tmp_path, INHIBIT), RuleState()
    assert sent(r, state, [failed(1), job_finished(2, "failed")], T0) == [("job-failed", 1)]
    first = r.route(state, [failed(3), failed(4, job="bmj_2")], summary(), T0 + 10 * MINUTE)
    assert first.notifications == ()  # the scenario window of T0 closed after the job failed: inhibited
    assert first.dropped == ("inhibited rule 'scenario-noise': 2 events of nightly-7 (by inhibit 'job-down')",)
    flushed = r.flush_due(state, T0 + 20 * MINUTE)
    assert [(n.rule, [e.job_id for e in n.events]) for n in flushed] == [("scenario-noise", ["bmj_2"])]


def test_the_inhibition_ends_when_the_incident_is_resolved(tmp_path: Path) -> None:
    r, state = build(tmp_path, INHIBIT), RuleState()
    sent(r, state, [job_finished(1, "failed")], T0)
    assert sent(r, state, [job_finished(2, "completed")], T0 + MINUTE) == [("job-ok", 1)]
    sent(r, state, [failed(3)], T0 + 2 * MINUTE)
    assert sent(r, state, [], T0 + 8 * MINUTE) == [("scenario-noise", 1)]


def test_without_a_resolving_rule_only_the_for_window_inhibits(tmp_path: Path) -> None:
    text = INHIBIT.replace("  - {name: job-ok", "  # - {name: job-ok").replace(
        "equal: [job_id]", "equal: [job_id]\n    for: 1h"
    )
    r, state = build(tmp_path, text), RuleState()
    sent(r, state, [job_finished(1, "failed")], T0)
    sent(r, state, [failed(2)], T0 + 10 * MINUTE)
    assert sent(r, state, [], T0 + 20 * MINUTE) == []  # within the hour
    sent(r, state, [failed(3)], T0 + 61 * MINUTE)
    assert sent(r, state, [], T0 + 70 * MINUTE) == [("scenario-noise", 1)]
    assert state.inhibitors == {}  # the source was forgotten once it no longer held


async def test_inhibitors_and_once_values_survive_a_restart(tmp_path: Path) -> None:
    text = INHIBIT.replace("group_wait: 5m}", "group_wait: 5m, once_per: '{{ job_name }}'}")
    r, state = build(tmp_path, text), RuleState()
    sent(r, state, [failed(1, job="bmj_2")], T0)
    sent(r, state, [job_finished(2, "failed")], T0 + 6 * MINUTE)
    async with SQLiteStore(tmp_path / "state.db") as store:
        await store.commit(memory=None, events=(), state_rows=rows_for(state.take_changes()), notifications=())
        restored = await load_rule_state(store)
    assert restored.inhibitors == state.inhibitors and restored.once == state.once and restored.once
    sent(r, restored, [failed(3, job="bmj_3")], T0 + 7 * MINUTE)  # same job name: once_per says no
    sent(r, restored, [failed(4)], T0 + 7 * MINUTE)  # inhibited
    assert sent(r, restored, [], T0 + 20 * MINUTE) == []


# -- once_per -------------------------------------------------------------------------------------------------


def test_once_per_sends_one_notification_per_rendered_value(tmp_path: Path) -> None:
    rules = "rules:\n  - {name: first, on: scenario.failed, notify: a, once_per: '{{ job_name }}'}\n"
    r, state = build(tmp_path, rules), RuleState()
    assert sent(r, state, [failed(1)], T0) == [("first", 1)]
    assert sent(r, state, [failed(2), failed(3, job="bmj_9")], T0 + MINUTE) == []  # same name, other job
    assert sent(r, state, [failed(4, name="nightly-8")], T0 + 2 * MINUTE) == [("first", 1)]
    routed = r.route(state, [failed(5)], summary(), T0 + 3 * MINUTE)
    assert routed.dropped == ("once_per rule 'first': 1 event of nightly-7 (already sent for this value)",)


# -- time intervals -------------------------------------------------------------------------------------------


def interval(spec: str) -> TimeIntervalConfig:
    return TimeIntervalConfig.model_validate({"name": "i", "time_intervals": [ast.literal_eval(spec)]})


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


@pytest.mark.parametrize(
    ("spec", "when", "inside"),
    [
        ("{'times': [{'start_time': '09:00', 'end_time': '17:00'}]}", "2026-09-01T09:00:00+00:00", True),
        ("{'times': [{'start_time': '09:00', 'end_time': '17:00'}]}", "2026-09-01T17:00:00+00:00", False),
        ("{'times': [{'start_time': '09:00', 'end_time': '17:00'}]}", "2026-09-01T16:59:59+00:00", True),
        ("{'times': [{'start_time': '22:00', 'end_time': '24:00'}]}", "2026-09-01T23:59:00+00:00", True),
        ("{'weekdays': ['monday:friday']}", "2026-09-05T12:00:00+00:00", False),  # a Saturday
        ("{'weekdays': ['saturday', 'sunday']}", "2026-09-06T12:00:00+00:00", True),
        ("{'weekdays': ['Monday:Friday'], 'location': 'Asia/Tokyo'}", "2026-09-04T20:00:00+00:00", False),
        ("{'days_of_month': ['-1']}", "2026-02-28T12:00:00+00:00", True),
        ("{'days_of_month': ['-1']}", "2026-03-30T12:00:00+00:00", False),
        ("{'days_of_month': ['1:5', '-3:-1']}", "2026-04-29T00:00:00+00:00", True),
        ("{'days_of_month': ['25:-1']}", "2026-02-28T00:00:00+00:00", True),
        ("{'days_of_month': ['29:31']}", "2027-02-28T00:00:00+00:00", False),
        ("{'days_of_month': ['25:-1']}", "2026-02-28T00:00:00+00:00", True),
        ("{'days_of_month': ['29:31']}", "2027-02-28T00:00:00+00:00", False),
        ("{'days_of_month': ['31']}", "2026-04-30T12:00:00+00:00", False),
        ("{'months': ['december', '1:2']}", "2026-01-15T00:00:00+00:00", True),
        ("{'months': ['june:august'], 'years': ['2027']}", "2026-07-15T00:00:00+00:00", False),
        (
            "{'times': [{'start_time': '09:00', 'end_time': '17:00'}], 'location': 'America/New_York'}",
            "2026-09-01T14:00:00+00:00",  # 10:00 in New York
            True,
        ),
    ],
)
def test_time_interval_semantics(spec: str, when: str, inside: bool) -> None:
    assert interval(spec).contains(at(when)) is inside


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{'times': [{'start_time': '17:00', 'end_time': '09:00'}]}", "start_time must be before end_time"),
        ("{'times': [{'start_time': '9am', 'end_time': '17:00'}]}", "expected a time of day as HH:MM"),
        ("{'weekdays': ['friday:monday']}", "the start of a range must not be after its end"),
        ("{'weekdays': ['fryday']}", "expected a name (sunday … saturday), got 'fryday' (did you mean 'friday'?)"),
        ("{'weekdays': ['1:5']}", "expected a name (sunday … saturday), got '1'"),
        ("{'days_of_month': ['-3:5']}", "-3:5: the end must be negative when the start is"),
        ("{'days_of_month': ['20:-10']}", "20:-10: the end is always before the start"),
        ("{'months': ['march:january']}", "the start of a range must not be after its end"),
        ("{'times': [{'start_time': '24:30', 'end_time': '24:00'}]}", "'24:30' is not a time of day"),
        ("{'days_of_month': ['0']}", "0 is out of range (-31 to 31)"),
        ("{'days_of_month': ['first']}", "expected a number, got 'first'"),
        ("{'months': ['janury']}", "expected a name (january … december) or a number, got 'janury' (did you mean"),
        ("{'months': ['13']}", "13 is out of range (1 to 12)"),
        ("{'location': 'Mars/Olympus'}", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_time_intervals_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        interval(spec)


INTERVALS = """
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "00:00", end_time: "07:00"}]
  - name: office-hours
    time_intervals:
      - weekdays: ["monday:friday"]
        times: [{start_time: "09:00", end_time: "17:00"}]
rules:
  - {name: quiet-at-night, on: scenario.failed, notify: a, mute_time_intervals: [nights]}
  - {name: office, on: scenario.failed, notify: a, active_time_intervals: office-hours}
"""


def test_muted_notifications_are_dropped_not_delayed(tmp_path: Path) -> None:
    r, state = build(tmp_path, INTERVALS), RuleState()
    routed = r.route(state, [failed(1)], summary(), at("2026-09-01T02:00:00+00:00"))
    assert routed.notifications == ()
    assert routed.dropped == (
        "muted rule 'quiet-at-night': 1 event of nightly-7 (in mute time interval 'nights')",
        "muted rule 'office': 1 event of nightly-7 (outside active time intervals office-hours)",
    )
    assert sent(r, state, [failed(2)], at("2026-09-01T10:00:00+00:00")) == [("quiet-at-night", 1), ("office", 1)]
    assert not state.groups  # nothing was kept for later


def test_unknown_interval_names_are_config_errors_with_a_suggestion(tmp_path: Path) -> None:
    text = INTERVALS.replace("mute_time_intervals: [nights]", "mute_time_intervals: [night]")
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, NOTIFIERS + textwrap.dedent(text))
    assert str(caught.value).endswith(
        "benchwatch.yaml:13: rules[0].mute_time_intervals[0]: unknown time interval 'night' (did you mean 'nights'?)"
    )


def test_the_recording_clock_decides(tmp_path: Path) -> None:
    # T0 is a Tuesday at 02:00 UTC: inside `nights`.
    assert datetime.fromtimestamp(T0 / 1000, tz=UTC).hour == 2
    r = build(tmp_path, INTERVALS)
    assert r.muted(r.rules[0], T0) == "in mute time interval 'nights'"


def test_an_unreachable_api_quiets_every_job_until_it_answers_again() -> None:
    from watcher.core.events import WatcherApiRecovered, WatcherApiUnreachable

    example = Path(__file__).parent.parent / "examples" / "inhibit-during-job-failure.yaml"
    loaded = load_config(example, {"RUNLOOP_API_KEY": "k", "SLACK_BOT_TOKEN": "x"}).config
    r = Router(loaded.rules, loaded.silences, inhibit=loaded.inhibit, time_intervals=loaded.time_intervals)
    state = RuleState()
    blind = {"job_id": "", "job_name": "", "at_ms": T0}
    down = WatcherApiUnreachable(id="ev_down", **blind, since_ms=T0 - 5 * MINUTE, failures=9, last_error="timeout")
    assert [n.rule for n in r.route(state, [down], None, T0).notifications] == ["api-unreachable"]
    sent(r, state, [failed(1), failed(2, job="bmj_2")], T0 + MINUTE)
    routed = r.route(state, [], None, T0 + 20 * MINUTE)
    assert routed.notifications == () and len(routed.dropped) == 2
    up = WatcherApiRecovered(id="ev_up", **{**blind, "at_ms": T0 + 21 * MINUTE}, down_for_ms=26 * MINUTE)
    assert [n.action for n in r.route(state, [up], None, T0 + 21 * MINUTE).notifications] == ["resolve"]
    sent(r, state, [failed(3)], T0 + 22 * MINUTE)
    assert sent(r, state, [], T0 + 40 * MINUTE) == [("scenario-failures", 1)]
