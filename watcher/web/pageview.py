"""What the status page shows, gathered from the store and the running watcher into plain values for the template.

Everything here is read from the store (shared by replicas) except the jobs' derived summaries, which the
watcher keeps for the jobs it polled since it started; a job without one shows its counters as one bar.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from rules.config import SilenceConfig
from rules.engine import Group
from rules.incidents import Incident, OpenIncident
from rules.match import FieldMatcher
from rules.persist import load_rule_state
from rules.silences import RuntimeSilence, load_runtime_silences
from watcher.core.eventlines import event_line
from watcher.core.events import ScenarioFailed, ScenarioTimedOut
from watcher.core.failureclass import FailureClass
from watcher.core.memory import JobMemory
from watcher.core.records import LoggedDelivery
from watcher.core.summary import MAX_FAILURE_EXAMPLES, AgentSummary, FailureExample, FailureGroup, JobSummary
from watcher.store.protocol import Store, StoredEvent
from watcher.web.pagerows import (
    AttemptRow,
    Bar,
    DeliveryFilters,
    DeliveryRow,
    EventRow,
    Filters,
    GroupRow,
    IncidentRow,
    JobRow,
    PageView,
    SilenceRow,
    span,
    when,
)
from watcher.web.source import StatusSource

EVENTS_SHOWN = 50
RUNNING_SHOWN = 200  # by name; a page of thousands of cards helps nobody: the API lists them all
VANISHED_SHOWN = 50  # the most recently vanished
FINISHED_SHOWN = 50  # the most recently changed
OUTBOX_SHOWN = 20
DELIVERIES_SHOWN = 50  # the delivery log's newest, as filtered (GET /api/deliveries pages further)
FAILURE_EVENTS_READ = 200  # per kind and job, for a job whose summary has no failure groups (still running)


async def build_view(
    source: StatusSource,
    filters: Filters,
    silence_prefill: str = "",
    delivery_filters: DeliveryFilters | None = None,
) -> PageView:
    """Gather the page's data now."""
    now_ms = source.now_ms()
    store = source.store
    view = PageView(now=when(now_ms), filters=filters, silence_prefill=silence_prefill)
    view.delivery_filters = delivery_filters or DeliveryFilters()
    memories = await store.load_memories()
    live = sorted((m for m in memories.values() if not m.finished and not m.vanished), key=_by_name)
    # A vanished job is no longer polled: it leaves "running" for a section of its own, the latest first.
    gone = sorted((m for m in memories.values() if m.vanished and not m.finished), key=_by_vanishing)
    done = sorted((m for m in memories.values() if m.finished), key=lambda m: (-m.last_change_ms, m.job_id))
    shown = live[:RUNNING_SHOWN] + gone[:VANISHED_SHOWN] + done[:FINISHED_SHOWN]
    view.not_shown = len(memories) - len(shown)
    summaries, dashboard_url = source.summaries(), source.dashboard_url()
    rows = [await _with_failures(_job_row(m, summaries.get(m.job_id), now_ms, dashboard_url), store) for m in shown]
    view.running = [row for row in rows if not row.finished and not row.vanished]
    view.vanished = [row for row in rows if row.vanished and not row.finished]
    view.finished = [row for row in rows if row.finished]
    view.job_names = sorted(((row.job_id, row.name) for row in rows), key=lambda pair: (pair[1], pair[0]))
    stored = await store.events(
        job_id=filters.job_id or None, kind=filters.kind or None, limit=EVENTS_SHOWN, newest_first=True
    )
    view.events = [_event_row(item, memories) for item in stored]
    await _notifications(view, source, memories)
    await _delivery_log(view, source, memories)
    view.silences = _silence_rows(await load_runtime_silences(store), source.config_silences(), now_ms)
    return view


def _by_name(memory: JobMemory) -> tuple[str, str]:
    return (memory.job_name, memory.job_id)


def _by_vanishing(memory: JobMemory) -> tuple[int, str]:
    return (-memory.last_seen_ms, memory.job_id)  # the poll that found it gone is the last one it had


def _job_row(memory: JobMemory, summary: JobSummary | None, now_ms: int, dashboard_url: str) -> JobRow:
    counters = memory.counters
    bars = _agent_bars(summary, counters.n_expected) if summary is not None and summary.agents else ()
    if not bars:
        bars = (
            Bar(
                "all agents",
                counters.n_completed,
                counters.n_failed,
                counters.n_timeout,
                counters.n_canceled,
                counters.n_expected,
            ),
        )
    scores = list(summary.scores.values()) if summary is not None else []
    return JobRow(
        job_id=memory.job_id,
        name=memory.job_name,
        state=memory.state,
        finished=memory.finished,
        age=span(now_ms - memory.first_seen_ms),
        quiet_for=span(now_ms - memory.last_change_ms),
        bars=bars,
        pass_rate=counters.n_completed / counters.n_done if counters.n_done else None,
        score=sum(scores) / len(scores) if scores else None,
        failures=summary.failures if summary is not None else (),
        stalled=memory.stalled,
        vanished=memory.vanished,
        vanished_at=when(memory.last_seen_ms) if memory.vanished else "",
        dashboard_url=summary.dashboard_url if summary is not None else dashboard_url,
        last_change_ms=memory.last_change_ms,
    )


async def _with_failures(row: JobRow, store: Store) -> JobRow:
    """A running job's failures come from its runs' final outcomes only when the runs end: until then (or after
    a restart) they are grouped from the recorded scenario.failed and scenario.timed_out events."""
    if row.failures or not any(bar.failed or bar.timed_out for bar in row.bars):
        return row
    examples: dict[tuple[str, FailureClass], list[FailureExample]] = {}
    for kind in ("scenario.failed", "scenario.timed_out"):
        for item in await store.events(job_id=row.job_id, kind=kind, limit=FAILURE_EVENTS_READ, newest_first=True):
            event = item.event
            if not isinstance(event, ScenarioFailed | ScenarioTimedOut):
                continue
            reason = event.failure_reason
            exception_type = reason.exception_type if reason is not None else kind.removeprefix("scenario.")
            examples.setdefault((exception_type, event.failure_class or "agent"), []).append(
                FailureExample(
                    scenario_name=event.scenario_name or event.scenario_definition_id,
                    agent_name=event.agent_name,
                    message=reason.exception_message if reason is not None else "",
                    url=None,
                )
            )
    groups = sorted(examples.items(), key=lambda item: (-len(item[1]), item[0]))
    failures = tuple(
        FailureGroup(
            exception_type=kind,
            failure_class=failure_class,
            count=len(found),
            examples=tuple(found[:MAX_FAILURE_EXAMPLES]),
        )
        for (kind, failure_class), found in groups
    )
    return dataclasses.replace(row, failures=failures)


def _agent_bars(summary: JobSummary, n_expected: int | None) -> tuple[Bar, ...]:
    # n_expected counts scenario ids × agent configs: each agent expects its share of it
    # (an uneven share means runs are missing yet: the bars then show what is done, not a guess)
    each = n_expected // len(summary.agents) if n_expected and n_expected % len(summary.agents) == 0 else None
    return tuple(_agent_bar(agent, each) for agent in summary.agents)


def _agent_bar(agent: AgentSummary, expected: int | None) -> Bar:
    label = agent.agent_name or agent.benchmark_run_id
    if agent.model_name:
        label = f"{label} ({agent.model_name})"
    return Bar(
        label,
        agent.n_completed,
        agent.n_failed,
        agent.n_timeout,
        0,
        expected,
        score=agent.score,
        url=agent.url,
        finished=agent.finished,
    )


def _event_row(item: StoredEvent, memories: Mapping[str, JobMemory]) -> EventRow:
    event = item.event
    memory = memories.get(event.job_id)
    return EventRow(
        seq=item.seq,
        at=when(event.at_ms),
        kind=event.kind,
        job_id=event.job_id,
        job_name=memory.job_name if memory is not None else event.job_id,
        text=event_line(event).removeprefix(f"{event.job_name}: "),  # the name is shown beside it already
    )


async def _notifications(view: PageView, source: StatusSource, memories: Mapping[str, JobMemory]) -> None:
    store = source.store
    view.counts = await store.outbox_counts()
    view.pending = await store.outbox_items(status="pending", limit=OUTBOX_SHOWN)
    view.sent = await store.outbox_items(status="sent", limit=OUTBOX_SHOWN, newest_first=True)
    view.dead = await store.outbox_items(status="dead", limit=OUTBOX_SHOWN, newest_first=True)
    state = await load_rule_state(store)
    view.groups = [_group_row(group) for group in sorted(state.groups.values(), key=lambda g: g.due_ms)]
    now_ms = source.now_ms()
    view.incidents = [
        _incident_row(incident, opened, memories)
        for incident, opened in sorted(state.incidents.items())
        if not opened.over_at(now_ms)  # its resolve_after has passed: closed at the next flush of the timers
    ]


def _incident_row(incident: Incident, opened: OpenIncident, memories: Mapping[str, JobMemory]) -> IncidentRow:
    if opened.jobs:
        names = ", ".join(memories[job].job_name if job in memories else job for job in opened.jobs)
        until = f"until {names} {'ends' if len(opened.jobs) == 1 else 'end'}"
    elif opened.closes_ms is not None:
        until = f"closes {when(opened.closes_ms)}"
    else:
        until = "until resolved"
    rule, key = incident
    return IncidentRow(rule, key, when(opened.opened_ms), until)


async def _delivery_log(view: PageView, source: StatusSource, memories: Mapping[str, JobMemory]) -> None:
    chosen = view.delivery_filters
    logged = await source.store.delivery_log(
        job_id=chosen.job_id or None,
        rule=chosen.rule or None,
        notifier=chosen.notifier or None,
        status=chosen.status or None,
        limit=DELIVERIES_SHOWN,
    )
    view.deliveries = [_delivery_row(item, memories) for item in logged]
    view.rule_names = sorted({*source.rule_names(), *([chosen.rule] if chosen.rule else [])})
    view.notifier_names = sorted({*source.notifier_names(), *([chosen.notifier] if chosen.notifier else [])})


def _delivery_row(logged: LoggedDelivery, memories: Mapping[str, JobMemory]) -> DeliveryRow:
    notification = logged.item.notification
    job_ids = sorted({event.job_id for event in notification.events})
    names = [memories[job_id].job_name if job_id in memories else job_id for job_id in job_ids]
    attempts = tuple(
        AttemptRow(
            when(attempt.started_ms),
            attempt.outcome.value,
            attempt.http_status,
            f"{attempt.reason}: {attempt.error}" if attempt.error else (attempt.reason or ""),
        )
        for attempt in logged.attempts
    )
    return DeliveryRow(
        id=notification.id,
        created=when(notification.created_ms),
        rule=notification.rule,
        notifier=notification.notifier,
        title=notification.title,
        jobs=", ".join(names),
        events=len(notification.events),
        status=logged.item.status.value,
        interrupted=logged.interrupted,
        attempts=attempts,
    )


def _group_row(group: Group) -> GroupRow:
    names = sorted({event.job_name for event in group.events if event.job_name})
    key = group.key.replace("\x1f", " · ")
    return GroupRow(group.rule, key, ", ".join(names) or "—", len(group.events), when(group.due_ms))


def _silence_rows(
    runtime: Sequence[RuntimeSilence], configured: Sequence[SilenceConfig], now_ms: int
) -> list[SilenceRow]:
    rows = [
        SilenceRow(s.id, s.matchers_text(), s.state_at(now_ms), when(s.starts_ms), when(s.ends_ms), s.comment)
        for s in runtime
    ]
    for silence in configured:
        rows.append(
            SilenceRow(
                None,
                _matchers(silence.match),
                "active" if silence.active_at(now_ms) else _not_active(silence, now_ms),
                when(None if silence.starts is None else round(silence.starts.timestamp() * 1000)),
                "never" if silence.until is None else when(round(silence.until.timestamp() * 1000)),
                silence.comment,
            )
        )
    order = {"active": 0, "pending": 1, "expired": 2}
    return sorted(rows, key=lambda row: order.get(row.state, 3))


def _not_active(silence: SilenceConfig, now_ms: int) -> str:
    return "pending" if silence.starts is not None and now_ms < silence.starts.timestamp() * 1000 else "expired"


def _matchers(match: Mapping[str, FieldMatcher]) -> str:
    return " ".join(f"{path}={m.raw}" for path, m in match.items())
