"""The rule engine: matching, `when`, routing order, grouping, throttling, silences, resolutions, templates."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from rules.engine import Router, RuleState
from rules.incidents import OpenIncident
from watcher.app.config import Config, load_config
from watcher.core.events import Counters, Event, JobFinished, JobProgress, RunFinished, ScenarioFailed
from watcher.core.models import FailureReason
from watcher.core.summary import JobSummary

T0 = 1_788_228_000_000
MINUTE = 60_000


def config(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path, {}).config


def router(tmp_path: Path, rules: str, silences: str = "") -> Router:
    text = "notifiers:\n  a: {type: console}\n  b: {type: console}\nrules:\n" + textwrap.indent(
        textwrap.dedent(rules), "  "
    )
    if silences:
        text += "silences:\n" + textwrap.indent(textwrap.dedent(silences), "  ")
    loaded = config(tmp_path, text)
    return Router(loaded.rules, loaded.silences)


def envelope(kind: str, n: int, job: str = "bmj_1", name: str = "nightly-7") -> dict[str, Any]:
    return {"id": f"ev_{kind}_{job}_{n}", "job_id": job, "job_name": name, "at_ms": T0 + n}


def failed(n: int, job: str = "bmj_1", exception: str = "AgentError", name: str = "nightly-7") -> ScenarioFailed:
    return ScenarioFailed(
        **envelope("failed", n, job, name),
        benchmark_run_id="bmr_1",
        agent_name="claude-code",
        scenario_definition_id=f"scn_{n}",
        scenario_name=f"scenario-{n}",
        scenario_run_id=f"scr_{n}",
        failure_reason=FailureReason(exception_type=exception, exception_message="boom"),
        duration_ms=5,
    )


def finished_run(n: int, score: float | None, job: str = "bmj_1") -> RunFinished:
    return RunFinished(
        **envelope("run", n, job),
        benchmark_run_id=f"bmr_{n}",
        agent_name="codex",
        model_name="gpt-5",
        score=score,
        average_score=score,
        n_completed=8,
        n_failed=2,
        n_timeout=0,
        duration_ms=1000,
    )


def job_finished(n: int, state: str, job: str = "bmj_1") -> JobFinished:
    return JobFinished(
        **envelope("finished", n, job), from_state="running", state=state, failure_reason=None, outcomes=()
    )


def summary(failure_rate: float | None = 0.1, job: str = "bmj_1") -> JobSummary:
    return JobSummary(
        **dict(Counters(n_completed=9, n_failed=1, n_done=10, n_expected=20)),
        job_id=job,
        job_name="nightly-7",
        state="running",
        failure_reason=None,
        failure_rate=failure_rate,
        scores={"codex": 0.4},
        min_score=0.4,
        agents=(),
        failures=(),
        dashboard_url="https://platform.runloop.ai",
    )


def route(r: Router, state: RuleState, events: list[Event], now_ms: int, s: JobSummary | None = None) -> list[Any]:
    return list(r.route(state, events, s or summary(), now_ms).notifications)


# -- matching ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        ("job_name: 'nightly-*'", True),
        ("job_name: 'weekly-*'", False),
        ("job_name: 're:^night.*-\\d+$'", True),
        ("job_name: ['weekly-*', 'nightly-*']", True),
        ("failure_reason.exception_type: AgentError", True),
        ("failure_reason.exception_type: [TimeoutError, OOM]", False),
        ("event.agent_name: claude-code", True),
        ("failure_rate: {gt: 0.05}", True),
        ("summary.failure_rate: {gt: 0.05, le: 0.1}", True),
        ("job.failure_rate: {lt: 0.05}", False),
        ("scores.codex: {lt: 0.5}", True),
        ("duration_ms: 5", True),
        ("duration_ms: {ne: 5}", False),
        ("no_such_field: null", True),
        ("no_such_field: {gt: 0}", False),
    ],
)
def test_where_matchers(tmp_path: Path, where: str, matches: bool) -> None:
    r = router(tmp_path, f"- name: r\n  on: scenario.failed\n  notify: a\n  where:\n    {where}\n")
    assert bool(route(r, RuleState(), [failed(1)], T0)) is matches


def test_on_takes_globs(tmp_path: Path) -> None:
    r = router(tmp_path, "- name: r\n  on: 'scenario.*'\n  notify: a\n  group_by: [event.id]\n")
    notes = route(r, RuleState(), [failed(1), finished_run(2, 0.5), failed(3)], T0)
    assert [n.events[0].kind for n in notes] == ["scenario.failed", "scenario.failed"]


def test_when_is_cel_and_its_errors_do_not_match(tmp_path: Path) -> None:
    r = router(
        tmp_path,
        """
        - name: low
          on: run.finished
          when: "event.average_score < 0.5 && summary.failure_rate > 0.05"
          notify: a
          group_by: [event.id]
        """,
    )
    state = RuleState()
    assert len(route(r, state, [finished_run(1, 0.3)], T0)) == 1
    assert route(r, state, [finished_run(2, 0.9)], T0) == []
    routed = r.route(state, [finished_run(3, None)], summary(), T0)  # null score: CEL type error
    assert routed.notifications == () and "rule 'low': when:" in routed.problems[0]


# -- routing -------------------------------------------------------------------------------------------------


def test_one_notification_per_notifier_and_rules_in_order_with_continue(tmp_path: Path) -> None:
    r = router(
        tmp_path,
        """
        - name: first
          on: scenario.failed
          notify: [a, b]
          severity: critical
        - name: stop
          on: scenario.failed
          where: {failure_reason.exception_type: AgentError}
          notify: a
          continue: false
        - name: never
          on: scenario.failed
          notify: b
        """,
    )
    notes = route(r, RuleState(), [failed(1)], T0)
    assert [(n.rule, n.notifier, n.severity) for n in notes] == [
        ("first", "a", "critical"), ("first", "b", "critical"), ("stop", "a", "info"),
    ]  # fmt: skip
    assert len({n.id for n in notes}) == 3


def test_grouping_is_exact(tmp_path: Path) -> None:
    r = router(tmp_path, "- name: burst\n  on: scenario.failed\n  notify: a\n  group_wait: 1m\n")
    state = RuleState()
    assert route(r, state, [failed(1), failed(2)], T0) == []
    assert route(r, state, [failed(3, job="bmj_2")], T0 + 10_000) == []
    assert route(r, state, [failed(4)], T0 + 59_999) == []
    notes = route(r, state, [], T0 + MINUTE)
    assert len(notes) == 1 and [e.id for e in notes[0].events] == [failed(n).id for n in (1, 2, 4)]
    assert notes[0].created_ms == T0 + MINUTE and notes[0].title == "nightly-7: 3 scenarios failed"
    later = r.flush_due(state, T0 + MINUTE + 10_000)
    assert [n.events[0].job_id for n in later] == ["bmj_2"]
    assert Router.next_due_ms(state) is None


def test_repeat_interval_holds_events_back_without_losing_them(tmp_path: Path) -> None:
    r = router(tmp_path, "- name: r\n  on: scenario.failed\n  notify: a\n  repeat_interval: 1h\n")
    state = RuleState()
    assert len(route(r, state, [failed(1)], T0)) == 1
    assert route(r, state, [failed(2)], T0 + 10 * MINUTE) == []
    assert route(r, state, [failed(3)], T0 + 30 * MINUTE) == []
    assert Router.next_due_ms(state) == T0 + 60 * MINUTE
    (held,) = r.flush_due(state, T0 + 60 * MINUTE)
    assert [e.id for e in held.events] == [failed(2).id, failed(3).id]
    other_job = route(r, state, [failed(4, job="bmj_9")], T0 + 61 * MINUTE)
    assert len(other_job) == 1  # the interval is per group key (job_id by default)


def test_silences_mute_matching_events_while_active(tmp_path: Path) -> None:
    r = router(
        tmp_path,
        "- name: r\n  on: scenario.failed\n  notify: a\n  group_by: [event.id]\n",
        silences="""
        - match: {job_name: "exp-*"}
          until: 2026-09-01T03:00:00Z
          comment: experiments are noisy
        """,
    )
    state = RuleState()
    routed = r.route(state, [failed(1, name="exp-1"), failed(2)], summary(), T0)
    assert [n.events[0].job_name for n in routed.notifications] == ["nightly-7"] and routed.silenced == 1
    after = r.route(state, [failed(3, name="exp-1")], summary(), T0 + 2 * 3_600_000)  # the silence ended
    assert len(after.notifications) == 1 and after.silenced == 0


PAGING = """
- name: page
  on: scenario.failed
  notify: a
  severity: critical
  dedup_key: "burst:{{ job_id }}"
- name: calm
  on: job.finished
  where: {state: completed}
  resolves: page
  notify: a
"""


def test_a_rule_resolves_what_another_opened(tmp_path: Path) -> None:
    r = router(tmp_path, PAGING)
    state = RuleState()
    (trigger,) = route(r, state, [failed(1)], T0)
    assert (trigger.action, trigger.dedup_key) == ("trigger", "burst:bmj_1")
    assert route(r, state, [job_finished(2, "completed", job="bmj_2")], T0) == []  # nothing open for bmj_2
    (resolution,) = route(r, state, [job_finished(3, "completed")], T0 + MINUTE)
    assert (resolution.action, resolution.dedup_key, resolution.rule) == ("resolve", "burst:bmj_1", "calm")
    assert route(r, state, [job_finished(4, "completed")], T0 + 2 * MINUTE) == []  # resolved once


def test_a_resolution_before_the_window_closes_cancels_the_trigger(tmp_path: Path) -> None:
    r = router(tmp_path, PAGING.replace("severity: critical", "severity: critical\n  group_wait: 5m"))
    state = RuleState()
    assert route(r, state, [failed(1)], T0) == []
    state.open_incident(("page", "burst:bmj_1"), OpenIncident(T0 - MINUTE))  # an earlier page for the job is open
    (resolution,) = route(r, state, [job_finished(2, "completed")], T0 + MINUTE)
    assert resolution.action == "resolve"
    assert r.flush_due(state, T0 + 10 * MINUTE) == []


def test_templates_render_and_fall_back_to_the_default(tmp_path: Path) -> None:
    r = router(
        tmp_path,
        """
        - name: custom
          on: run.finished
          notify: a
          title: "{{ job_name }}: {{ event.agent_name }} scored {{ '%.2f' % event.average_score }}"
          text: "{{ count }} run(s); failure rate {{ summary.failure_rate }}"
        - name: broken
          on: run.finished
          notify: b
          title: "{{ event.no_such_field }}"
        """,
    )
    routed = r.route(RuleState(), [finished_run(1, 0.456)], summary(), T0)
    custom, broken = routed.notifications
    assert (custom.title, custom.text) == ("nightly-7: codex scored 0.46", "1 run(s); failure rate 0.1")
    assert broken.title.startswith("nightly-7: run finished: codex score 0.456")
    assert any("rule 'broken'" in problem for problem in routed.problems)


def test_the_sandbox_refuses_unsafe_templates(tmp_path: Path) -> None:
    r = router(tmp_path, '- name: r\n  on: run.finished\n  notify: a\n  title: "{{ event.__class__.__mro__ }}"\n')
    routed = r.route(RuleState(), [finished_run(1, 0.5)], summary(), T0)
    assert "__class__" not in routed.notifications[0].title and routed.problems


def test_progress_events_route_like_any_other(tmp_path: Path) -> None:
    r = router(tmp_path, "- name: p\n  on: job.progress\n  where: {n_failed: {ge: 3}}\n  notify: a\n")
    progress = JobProgress(**envelope("progress", 1), **dict(Counters(n_failed=3, n_done=5, n_expected=10)))
    assert len(route(r, RuleState(), [progress], T0)) == 1
