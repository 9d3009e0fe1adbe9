"""The rules engine's decisions: for every event and rule, what was decided and on which evidence — as data."""

from __future__ import annotations

import textwrap
from pathlib import Path

from rules.engine import Router, RuleState
from rules.silences import RuntimeSilence
from tests.test_rules import MINUTE, T0, config, failed, job_finished, summary
from watcher.core.decisions import Decision, Verdict, decisions_body, decisions_from_body, describe
from watcher.core.events import Event

NOTIFIERS = "notifiers:\n  a: {type: console}\n  b: {type: console}\n"


def build(tmp_path: Path, text: str) -> Router:
    loaded = config(tmp_path, NOTIFIERS + textwrap.dedent(text))
    return Router(loaded.rules, loaded.silences, inhibit=loaded.inhibit, time_intervals=loaded.time_intervals)


def decided(r: Router, state: RuleState, events: list[Event], now_ms: int) -> list[Decision]:
    return list(r.route(state, events, summary(), now_ms).decisions)


def flushed(r: Router, state: RuleState, now_ms: int) -> list[Decision]:
    decisions: list[Decision] = []
    r.flush_due(state, now_ms, decisions=decisions)
    return decisions


def about(decisions: list[Decision], rule: str) -> list[Decision]:
    return [d for d in decisions if d.rule == rule]


def test_every_rule_says_why_it_did_not_match_with_the_value_it_saw(tmp_path: Path) -> None:
    r = build(
        tmp_path,
        """
        rules:
          - {name: finished, on: job.finished, notify: a}
          - {name: other-job, on: scenario.failed, where: {job_name: "weekly-*"}, notify: a}
          - {name: missing, on: scenario.failed, where: {failure_reason.exit_code: 3}, notify: a}
          - {name: rare, on: scenario.failed, when: "summary.failure_rate > 0.5", notify: a}
          - {name: broken, on: scenario.failed, when: "summary.scores.nobody > 0.5", notify: a}
          - {name: caught, on: scenario.failed, notify: b}
        """,
    )
    event = failed(1)
    by_rule = {d.rule: d for d in decided(r, RuleState(), [event], T0)}
    assert all(d.event_id == event.id and d.at_ms == T0 for d in by_rule.values())
    assert by_rule["finished"] == Decision(
        event.id, "finished", Verdict.NOT_MATCHED, T0, by="on", expected=["job.finished"], seen="scenario.failed"
    )
    assert (by_rule["other-job"].by, by_rule["other-job"].expected, by_rule["other-job"].seen) == (
        "where.job_name", "weekly-*", "nightly-7",
    )  # fmt: skip
    assert by_rule["missing"].note == "the field is missing" and by_rule["missing"].seen is None
    assert (by_rule["rare"].by, by_rule["rare"].seen) == ("when", False)
    assert by_rule["broken"].verdict == Verdict.NOT_MATCHED and by_rule["broken"].note  # the evaluation error
    assert by_rule["caught"].verdict == Verdict.SENT and by_rule["caught"].sent_to[0][0] == "b"
    assert describe(by_rule["other-job"]) == 'not matched: where.job_name: "weekly-*" does not hold for "nightly-7"'
    assert describe(by_rule["finished"]) == 'not matched: on: ["job.finished"] does not catch scenario.failed'


def test_a_window_holds_then_sends_and_the_notification_ids_are_named(tmp_path: Path) -> None:
    r = build(tmp_path, "rules:\n  - {name: burst, on: scenario.failed, notify: [a, b], group_wait: 5m}\n")
    state = RuleState()
    first, second = failed(1), failed(2)
    held = decided(r, state, [first], T0) + decided(r, state, [second], T0 + MINUTE)
    assert [(d.verdict, d.until_ms) for d in held] == [(Verdict.HELD, T0 + 5 * MINUTE)] * 2
    sent = flushed(r, state, T0 + 5 * MINUTE)
    assert [d.event_id for d in sent] == [first.id, second.id]
    assert {d.verdict for d in sent} == {Verdict.SENT} and sent[0].at_ms == T0 + 5 * MINUTE
    assert [notifier for notifier, _ in sent[0].sent_to] == ["a", "b"]
    assert all(notification_id.startswith("nt_") for _, notification_id in sent[0].sent_to)


def test_a_repeat_interval_says_since_when_and_until_when(tmp_path: Path) -> None:
    r = build(tmp_path, "rules:\n  - {name: digest, on: scenario.failed, notify: a, repeat_interval: 1h}\n")
    state = RuleState()
    assert [d.verdict for d in decided(r, state, [failed(1)], T0)] == [Verdict.SENT]
    (repeat,) = decided(r, state, [failed(2)], T0 + 10 * MINUTE)
    assert (repeat.verdict, repeat.since_ms, repeat.until_ms) == (Verdict.REPEAT, T0, T0 + 60 * MINUTE)
    assert describe(repeat).startswith("matched; held by repeat_interval (last sent 2026-09-01 02:00:00Z)")


def test_silences_name_themselves_for_the_rules_that_would_have_matched(tmp_path: Path) -> None:
    r = build(
        tmp_path,
        """
        rules:
          - {name: failures, on: scenario.failed, notify: a}
          - {name: finished, on: job.finished, notify: a}
        silences:
          - {match: {job_name: "nightly-*"}, until: 2026-12-01T00:00:00Z, comment: noisy}
        """,
    )
    (silenced, unmatched) = decided(r, RuleState(), [failed(1)], T0)
    assert (silenced.verdict, silenced.by, silenced.note) == (Verdict.SILENCED, "silences[0]", "noisy")
    assert unmatched.verdict == Verdict.NOT_MATCHED  # a silence does not make other rules match
    assert describe(silenced) == "matched, but silenced by silences[0] until 2026-12-01 00:00:00Z (noisy)"

    runtime = RuntimeSilence(
        id="sil_0123456789ab", match={"job_name": "nightly-7"}, starts_ms=T0, ends_ms=T0 + 60 * MINUTE,
        created_ms=T0, comment="runner upgrade", created_by="alice",
    )  # fmt: skip
    r = build(tmp_path, "rules:\n  - {name: failures, on: scenario.failed, notify: a}\n")
    r.use_runtime_silences([runtime])
    (silenced,) = decided(r, RuleState(), [failed(1)], T0)
    assert (silenced.by, silenced.until_ms) == ("sil_0123456789ab", T0 + 60 * MINUTE)
    assert silenced.note == "alice: runner upgrade"


def test_continue_false_stops_the_later_rules(tmp_path: Path) -> None:
    r = build(
        tmp_path,
        """
        rules:
          - {name: first, on: scenario.failed, notify: a, continue: false}
          - {name: second, on: scenario.failed, notify: b}
          - {name: third, on: job.finished, notify: b}
        """,
    )
    decisions = decided(r, RuleState(), [failed(1)], T0)
    assert [(d.rule, d.verdict, d.by) for d in decisions if d.verdict != Verdict.SENT] == [
        ("second", Verdict.STOPPED, "first"),
        ("third", Verdict.NOT_MATCHED, "on"),  # it would not have caught the event anyway
    ]


INHIBIT = """
rules:
  - {name: job-failed, on: job.finished, where: {state: failed}, notify: a, severity: critical}
  - {name: job-ok, on: job.finished, where: {state: completed}, resolves: job-failed, notify: a}
  - {name: scenarios, on: scenario.failed, notify: b, group_wait: 10m}
inhibit:
  - {name: failed-job-quiets, source: {rule: job-failed}, target: {kind: "scenario.*"}, equal: [job_id]}
"""


def test_an_inhibited_event_names_the_inhibition_and_its_source_incident(tmp_path: Path) -> None:
    r = build(tmp_path, INHIBIT)
    state = RuleState()
    decided(r, state, [failed(1)], T0)
    decided(r, state, [job_finished(2, "failed")], T0 + MINUTE)
    (inhibited,) = about(flushed(r, state, T0 + 10 * MINUTE), "scenarios")
    assert (inhibited.verdict, inhibited.by) == (Verdict.INHIBITED, "failed-job-quiets")
    assert inhibited.since_ms == T0 + MINUTE
    assert inhibited.incidents == ("job-failed/job-failed:bmj_1",)
    assert describe(inhibited) == (
        "inhibited by 'failed-job-quiets': its source was sent 2026-09-01 02:01:00Z while "
        "job-failed/job-failed:bmj_1 is open"
    )


def test_a_resolution_with_nothing_open_and_one_that_cancels_a_pending_trigger(tmp_path: Path) -> None:
    r = build(
        tmp_path,
        """
        rules:
          - {name: burst, on: scenario.failed, notify: a, group_wait: 10m}
          - {name: over, on: job.finished, where: {state: completed}, resolves: burst, notify: a}
        """,
    )
    state = RuleState()
    (nothing,) = about(decided(r, state, [job_finished(1, "completed", job="bmj_2")], T0), "over")
    assert (nothing.verdict, nothing.by, nothing.seen) == (Verdict.NOT_OPEN, "burst", "burst:bmj_2")

    decided(r, state, [failed(2)], T0)
    decisions = decided(r, state, [job_finished(3, "completed")], T0 + MINUTE)
    (canceled,) = [d for d in about(decisions, "burst") if d.verdict != Verdict.NOT_MATCHED]  # not: job.finished
    assert (canceled.event_id, canceled.verdict, canceled.by) == (failed(2).id, Verdict.CANCELED, "over")


def test_muted_and_inactive_say_when_the_interval_changes(tmp_path: Path) -> None:
    r = build(
        tmp_path,
        """
        time_intervals:
          - name: nights
            time_intervals: [{times: [{start_time: "00:00", end_time: "07:00"}]}]
          - name: afternoons
            time_intervals: [{times: [{start_time: "12:00", end_time: "18:00"}]}]
        rules:
          - {name: quiet-nights, on: scenario.failed, notify: a, mute_time_intervals: [nights]}
          - {name: afternoons-only, on: scenario.failed, notify: b, active_time_intervals: [afternoons]}
        """,
    )
    decisions = decided(r, RuleState(), [failed(1)], T0)  # T0 is 02:00 UTC
    muted, inactive = about(decisions, "quiet-nights")[0], about(decisions, "afternoons-only")[0]
    assert (muted.verdict, muted.by, muted.until_ms) == (Verdict.MUTED, "nights", T0 + 5 * 60 * MINUTE)
    assert (inactive.verdict, inactive.until_ms) == (Verdict.INACTIVE, T0 + 10 * 60 * MINUTE)
    assert describe(muted) == "muted: in mute time interval 'nights' (it ends 2026-09-01 07:00:00Z)"


def test_once_per_says_which_value_and_since_when(tmp_path: Path) -> None:
    r = build(tmp_path, "rules:\n  - {name: first, on: scenario.failed, notify: a, once_per: '{{ job_name }}'}\n")
    state = RuleState()
    decided(r, state, [failed(1)], T0)
    (again,) = decided(r, state, [failed(2)], T0 + MINUTE)
    assert (again.verdict, again.seen, again.since_ms) == (Verdict.ONCE_PER, "nightly-7", T0)


def test_decisions_keep_their_evidence_through_the_stores_body() -> None:
    decision = Decision(
        "ev_1", "r", Verdict.INHIBITED, T0, by="x", since_ms=T0 - 1, incidents=("a/b",), sent_to=(("n", "nt_1"),)
    )
    plain = Decision("ev_1", "r", Verdict.NOT_MATCHED, T0, by="where.n", expected={"lt": 0.5}, seen=0.7)
    later = Decision("ev_1", "r", Verdict.SENT, T0 + 1, sent_to=(("n", "nt_2"),))
    assert decisions_from_body("ev_1", decisions_body([decision, plain, later])) == [decision, plain, later]
    assert len(decisions_body([plain])) < 110  # compact: defaults are left out
    elsewhere = [
        Decision("ev_1", name, Verdict.NOT_MATCHED, T0, by="on", expected=["job.*"], seen="scenario.failed")
        for name in ("q", "s")
    ]
    body = decisions_body([plain, *elsewhere])
    assert body.endswith(',{"not_listening":["q","s"]}]')  # the time as before; the kinds are the rule's, the event's
    (_, kept, _) = decisions_from_body("ev_1", body)
    assert (kept.rule, kept.at_ms, kept.by, kept.expected, kept.seen) == ("q", T0, "on", None, None)
    assert describe(kept) == "not matched: on: does not catch this kind"
