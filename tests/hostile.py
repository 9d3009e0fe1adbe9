"""Every event kind, over hostile and huge input: the notifications the consumers' own code judges.

One job of 20 agents with 500 failing scenarios among them, every name full of markup for every place our text lands
(Slack mrkdwn, Discord and Adaptive Card markdown, HTML, XML, JSON), 10 kB exception messages — run through the real
diff, summary, comparison, timers, API health and rules, so each notification is exactly what a notifier would be
handed. Shared by the conformance tests of Slack, Teams, Discord, CloudEvents, JUnit and the event schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from rules.config import RuleConfig
from rules.engine import Router, RuleState
from watcher.api.health import ApiHealth
from watcher.core.events import EVENT_KINDS, Event, ExceptionCount, JobCompared, JobInfraDegraded, event_id
from watcher.core.models import BenchmarkJobView
from watcher.core.notification import Notification
from watcher.core.snapshot import Snapshot
from watcher.core.summary import JobSummary
from watcher.diff.compare import compare_jobs
from watcher.diff.jobs import diff, unchanged
from watcher.diff.outcomes import job_outcomes
from watcher.diff.summary import summarize
from watcher.diff.timers import stall, vanish

# Markup of every receiver at once: Slack (<!channel>, &), Discord (@everyone, <@id>, ||spoilers||), markdown links
# and emphasis, Adaptive Card functions ({{DATE}}), HTML, XML (]]>), line starts (#, >, -, 1.), bidi and control
# characters, and text outside the Basic Multilingual Plane.
HOSTILE = (
    "<!channel> <@U0123> @everyone <@&42> **bold** __under__ ~~gone~~ ||spoiler|| `code` [click](javascript:alert(1)) "
    "{{DATE(2026-01-01T00:00:00Z)}} <script>alert('x')</script> & &amp; ]]> \"quoted\" 'single'\n"
    "# heading\n> quote\n- item\n1. first | pipe \\ back \u202eevil\u202c \u200b zero-width 😀 \x07bell\x1b[31m\x00"
)
N_AGENTS = 20
N_FAILING = 500  # failing scenarios over all agents
N_PASSING_PER_AGENT = 5
MESSAGE_CHARS = 10_000
DASHBOARD = "https://platform.runloop.ai"
JOB_ID = "bmj_HOSTILE0001"
BASELINE_ID = "bmj_HOSTILE0000"
T0_MS = 1_788_228_000_000
STEP_MS = 60_000
NOTIFIER = "consumer"


def message(seed: int) -> str:
    """A 10 kB exception message: hostile text, then a number so messages differ."""
    line = f"#{seed} {HOSTILE} "
    return (line * (MESSAGE_CHARS // len(line) + 1))[:MESSAGE_CHARS]


def agent_name(index: int) -> str:
    return f"agent-{index:02d} {HOSTILE}"


def _scenario(run: int, index: int, *, failing: bool, passed_before: bool) -> dict[str, Any]:
    outcome: dict[str, Any] = {
        "scenario_definition_id": f"scn_{index:04d}",
        "scenario_name": f"scenario-{index:04d} {HOSTILE}",
        "scenario_run_id": f"scr_{run:02d}{index:04d}",
        "duration_ms": 60_000 + index,
    }
    if not failing:
        return outcome | {"state": "COMPLETED", "score": 1.0}
    if not passed_before and index % 7 == 3:
        return outcome | {"state": "TIMEOUT", "failure_reason": {"exception_type": "Timeout", "exception_message": ""}}
    if not passed_before and index % 11 == 5:
        return outcome | {"state": "CANCELED"}
    kind = f"Error{index % 40:02d}<{HOSTILE}>"  # 40 exception types: more than any list shows
    return outcome | {
        "state": "FAILED",
        "failure_reason": {"exception_type": kind, "exception_message": message(index)},
    }


def _outcome(run: int, *, baseline: bool) -> dict[str, Any]:
    per_agent = N_FAILING // N_AGENTS
    scenarios = [
        _scenario(run, index, failing=not baseline or index % 2 == 0, passed_before=baseline)
        for index in range(per_agent)
    ]
    scenarios += [
        _scenario(run, per_agent + index, failing=False, passed_before=baseline) for index in range(N_PASSING_PER_AGENT)
    ]
    states = [s["state"] for s in scenarios]
    return {
        "benchmark_run_id": f"bmr_{'B' if baseline else 'H'}{run:02d}",
        "agent_name": agent_name(run),
        "model_name": f"model {HOSTILE}",
        "n_completed": states.count("COMPLETED"),
        "n_failed": states.count("FAILED"),
        "n_timeout": states.count("TIMEOUT"),
        "average_score": round(states.count("COMPLETED") / len(states), 4),
        "duration_ms": 3_600_000 + run,
        "scenario_outcomes": scenarios,
    }


def _in_progress(run: int) -> dict[str, Any]:
    return {
        "benchmark_run_id": f"bmr_H{run:02d}",
        "state": "running",
        "start_time_ms": T0_MS,
        "agent_config": {"type": "job_agent", "name": agent_name(run), "model_name": f"model {HOSTILE}"},
    }


def job_view(state: str, *, outcomes: bool = False, running: bool = False, baseline: bool = False) -> dict[str, Any]:
    """The hostile job as the API would send it: `outcomes` of every agent, or its runs `running`."""
    return {
        "id": BASELINE_ID if baseline else JOB_ID,
        "name": f"nightly {HOSTILE}",
        "state": state,
        "create_time_ms": T0_MS - (86_400_000 if baseline else 0),
        "failure_reason": message(0) if state == "failed" else None,
        "job_source": {"type": "benchmark", "benchmark_id": f"bm {HOSTILE}"},
        "job_spec": {
            "scenario_ids": [f"scn_{i:04d}" for i in range(N_FAILING // N_AGENTS + N_PASSING_PER_AGENT)],
            "agent_configs": [{"type": "job_agent", "name": agent_name(run)} for run in range(N_AGENTS)],
        },
        "benchmark_outcomes": [_outcome(run, baseline=baseline) for run in range(N_AGENTS)] if outcomes else [],
        "in_progress_runs": [_in_progress(run) for run in range(N_AGENTS)] if running else [],
    }


@dataclass(frozen=True)
class Story:
    """What the hostile job's life produced: every event in order, and its summary at the end."""

    events: tuple[Event, ...]
    summary: JobSummary
    finished_view: BenchmarkJobView


@cache
def story() -> Story:
    """The hostile job's life through the real diff, timers, comparison and API health: every kind at least once."""
    views = [
        job_view("queued"),
        job_view(f"warming up {HOSTILE}"),  # a state this version does not know
        job_view("running", running=True),
        job_view("running", running=True, outcomes=True),
        _rescored(job_view("running", running=True, outcomes=True)),
        job_view("completed", outcomes=True),
    ]
    events: list[Event] = []
    memory = None
    at_ms = T0_MS
    for raw in views:
        at_ms += STEP_MS
        result = diff(memory, Snapshot(job=BenchmarkJobView.model_validate(raw), at_ms=at_ms))
        events += result.events
        memory = result.memory
        if raw["state"] == "running" and not raw["benchmark_outcomes"]:
            stalled = stall(unchanged(memory, at_ms + 3_600_000), at_ms + 3_600_000, 60_000)
            assert stalled is not None
            events.append(stalled[0])
    assert memory is not None
    finished = BenchmarkJobView.model_validate(views[-1])
    events.append(_compared(finished, at_ms))
    events.append(_infra_degraded(finished, at_ms))
    gone = vanish(memory, at_ms + STEP_MS)
    assert gone is not None
    events.append(gone[0])
    events += _outage(at_ms)
    summary = summarize(finished, memory.counters, {}, DASHBOARD)
    missing = set(EVENT_KINDS) - {event.kind for event in events}
    assert not missing, f"the hostile story never produced {sorted(missing)}: extend it"
    return Story(tuple(events), summary, finished)


def _rescored(view: dict[str, Any]) -> dict[str, Any]:
    """The same outcomes, one agent's score revised and its first failure retried into a pass."""
    first = view["benchmark_outcomes"][0]
    first["average_score"] = round(first["average_score"] + 0.01, 4)
    scenarios = first["scenario_outcomes"]
    scenarios[0] = scenarios[0] | {"state": "COMPLETED", "score": 1.0, "scenario_run_id": "scr_retry"}
    scenarios[0].pop("failure_reason", None)
    return view


def _compared(finished: BenchmarkJobView, at_ms: int) -> JobCompared:
    baseline = BenchmarkJobView.model_validate(job_view("completed", outcomes=True, baseline=True))
    comparison = compare_jobs(job_outcomes(finished), job_outcomes(baseline), dashboard_url=DASHBOARD)
    return JobCompared(
        id=event_id(finished.id, "job.compared", baseline.id),
        job_id=finished.id,
        job_name=finished.name,
        at_ms=at_ms,
        **dict(comparison),
    )


def _infra_degraded(finished: BenchmarkJobView, at_ms: int) -> JobInfraDegraded:
    """The hostile job's failures told as setup's: its exception types (hostile names) as the platform's."""
    failures = [s for o in finished.benchmark_outcomes or () for s in o.scenario_outcomes or () if s.failure_reason]
    types = Counter(s.failure_reason.exception_type for s in failures if s.failure_reason is not None)
    done = sum(len(o.scenario_outcomes or ()) for o in finished.benchmark_outcomes or ())
    return JobInfraDegraded(
        id=event_id(finished.id, "job.infra_degraded", ""),
        job_id=finished.id,
        job_name=finished.name,
        at_ms=at_ms,
        n_setup=len(failures),
        n_done=done,
        setup_ratio=round(len(failures) / done, 6),
        infra_alert_ratio=0.2,
        exception_types=tuple(ExceptionCount(exception_type=kind, count=n) for kind, n in types.most_common()),
    )


def _outage(at_ms: int) -> list[Event]:
    health = ApiHealth(unreachable_after_ms=60_000)
    health.failed(at_ms, message(1))
    down = health.check(at_ms + 120_000)
    back = health.succeeded(at_ms + 180_000)
    assert down is not None and back is not None
    return [down, back]


def _rule(name: str, severity: str, **more: Any) -> RuleConfig:
    return RuleConfig.model_validate({"name": name, "on": "*", "notify": [NOTIFIER], "severity": severity, **more})


def _routed(events: Sequence[Event], summary: JobSummary | None, rule: RuleConfig) -> list[Notification]:
    routed = Router([rule]).route(RuleState(), events, summary, T0_MS)
    assert not routed.problems, routed.problems
    return list(routed.notifications)


@cache
def notifications() -> tuple[tuple[str, Notification], ...]:
    """Labelled notifications a rule would send: one per event kind (each severity in turn), every event of the
    job in one, a resolve, a 10 kB title over a 100 kB text, and one about no job with nothing in it."""
    told = story()
    severities = ("info", "warning", "critical")
    out: list[tuple[str, Notification]] = []
    for index, kind in enumerate(EVENT_KINDS):
        event = next(event for event in told.events if event.kind == kind)
        summary = None if kind.startswith("watcher.") else told.summary
        (sent,) = _routed([event], summary, _rule(f"rule {kind} {HOSTILE}", severities[index % 3]))
        out.append((kind, sent))
    about_job = [event for event in told.events if event.job_id]
    everything = _routed(about_job, told.summary, _rule(f"everything {HOSTILE}", "critical"))[0]
    out.append(("every event", everything))
    out.append(("resolved", everything.model_copy(update={"action": "resolve"})))
    out.append(("huge title and text", everything.model_copy(update={"title": message(2), "text": message(3) * 10})))
    bare = everything.model_copy(update={"title": HOSTILE, "text": "", "summary": None, "events": ()})
    out.append(("no job, no text", bare))
    return tuple(out)
