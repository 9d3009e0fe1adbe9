"""Routing: events meet the rules in order → silences, grouping, throttling → `Notification` values.

Synchronous and pure given its state: the `RuleState` (open group windows, last send per group, open incidents)
is passed in, changed in place, and its changes are taken out for the store to commit with the poll. Incidents of
rules nothing resolves close by themselves (`rules.incidents`): when their jobs end, or after `resolve_after`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rules.config import InhibitConfig, RuleConfig, SilenceConfig
from rules.expr import ExpressionError
from rules.gates import Gates, Outgoing, events_of
from rules.incidents import Incident, OpenIncident, ended_job, next_closing_ms, opened_by
from rules.inhibit import Inhibitor, InhibitorKey
from rules.match import MISSING, first_miss, resolve
from rules.silences import RuntimeSilence
from rules.templates import Template, TemplateError, default_text, default_title, template_context
from rules.timeintervals import TimeIntervalConfig
from rules.trail import Trail, evidence
from watcher.core.decisions import Decision, Verdict
from watcher.core.events import Event
from watcher.core.notification import Notification, notification_id
from watcher.core.summary import JobSummary

GroupId = tuple[str, str]  # (rule name, group key)


@dataclass
class Group:
    """Events of one rule and group key, waiting for their window to close."""

    rule: str
    key: str
    opened_ms: int
    due_ms: int
    events: list[Event]
    summary: JobSummary | None
    ended_jobs: tuple[str, ...] = ()  # jobs of its events that ended while it waited (see rules.incidents)


@dataclass(frozen=True)
class RuleStateChanges:
    """What changed in a RuleState since the last `take_changes`: `None` means deleted."""

    groups: tuple[tuple[GroupId, Group | None], ...] = ()
    last_sent: tuple[tuple[GroupId, int], ...] = ()
    incidents: tuple[tuple[Incident, OpenIncident | None], ...] = ()
    inhibitors: tuple[tuple[InhibitorKey, Inhibitor | None], ...] = ()
    once: tuple[tuple[tuple[str, str], int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.groups or self.last_sent or self.incidents or self.inhibitors or self.once)


@dataclass
class RuleState:
    """Open group windows, the last send per group, the incidents (rule, dedup key) left open, the active
    inhibition sources, and the values each `once_per` rule has sent for."""

    groups: dict[GroupId, Group] = field(default_factory=dict)
    last_sent: dict[GroupId, int] = field(default_factory=dict)
    incidents: dict[Incident, OpenIncident] = field(default_factory=dict)
    inhibitors: dict[InhibitorKey, Inhibitor] = field(default_factory=dict)
    once: dict[tuple[str, str], int] = field(default_factory=dict)
    _touched_groups: set[GroupId] = field(default_factory=set)
    _touched_sends: set[GroupId] = field(default_factory=set)
    _touched_incidents: set[Incident] = field(default_factory=set)
    _touched_inhibitors: set[InhibitorKey] = field(default_factory=set)
    _touched_once: set[tuple[str, str]] = field(default_factory=set)

    def put_group(self, group: Group) -> None:
        """Open or update a group window."""
        self.groups[(group.rule, group.key)] = group
        self._touched_groups.add((group.rule, group.key))

    def drop_group(self, group_id: GroupId) -> None:
        """Close a group window."""
        self.groups.pop(group_id, None)
        self._touched_groups.add(group_id)

    def sent(self, group_id: GroupId, at_ms: int) -> None:
        """Remember when a group last sent (for `repeat_interval`)."""
        self.last_sent[group_id] = at_ms
        self._touched_sends.add(group_id)

    def open_incident(self, incident: Incident, opened: OpenIncident) -> None:
        """Remember an incident a rule opened (for `resolves`, and the page); one open already is merged into."""
        earlier = self.incidents.get(incident)
        self.incidents[incident] = opened if earlier is None else earlier.merged(opened)
        self._touched_incidents.add(incident)

    def keep_incident(self, incident: Incident, kept: OpenIncident) -> None:
        """Replace what is remembered of an open incident (one of its jobs ended)."""
        self.incidents[incident] = kept
        self._touched_incidents.add(incident)

    def close_incident(self, incident: Incident) -> bool:
        """Forget an incident; returns whether it was open."""
        was_open = self.incidents.pop(incident, None) is not None
        self._touched_incidents.add(incident)
        return was_open

    def activate(self, key: InhibitorKey, inhibitor: Inhibitor | None) -> None:
        """Record an inhibition source as active (None: no longer)."""
        if inhibitor is None:
            self.inhibitors.pop(key, None)
        else:
            self.inhibitors[key] = inhibitor
        self._touched_inhibitors.add(key)

    def remember_once(self, rule_value: tuple[str, str], at_ms: int) -> None:
        """Remember that a `once_per` rule has sent for this value."""
        self.once.setdefault(rule_value, at_ms)
        self._touched_once.add(rule_value)

    def take_changes(self) -> RuleStateChanges:
        """The changes since the last call, for the store; clears the record."""
        changes = RuleStateChanges(
            groups=tuple((gid, self.groups.get(gid)) for gid in sorted(self._touched_groups)),
            last_sent=tuple((gid, self.last_sent[gid]) for gid in sorted(self._touched_sends)),
            incidents=tuple((inc, self.incidents.get(inc)) for inc in sorted(self._touched_incidents)),
            inhibitors=tuple((key, self.inhibitors.get(key)) for key in sorted(self._touched_inhibitors)),
            once=tuple((key, self.once[key]) for key in sorted(self._touched_once)),
        )
        for touched in (self._touched_groups, self._touched_sends, self._touched_incidents):
            touched.clear()
        self._touched_inhibitors.clear()
        self._touched_once.clear()
        return changes


@dataclass(frozen=True)
class Routed:
    """What routing some events gave: notifications due now, how many events silences ate, problems, what was
    dropped on the way out (muted, inhibited, already sent once) in one line each, and the decision for each
    event × rule (`watcher.core.decisions`)."""

    notifications: tuple[Notification, ...]
    silenced: int = 0
    problems: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    decisions: tuple[Decision, ...] = ()


@dataclass(frozen=True)
class _Silence:
    """The silence that drops an event, as its decisions name it."""

    by: str  # a runtime silence's id, or `silences[N]` for the config file's
    until_ms: int | None
    note: str | None


class Router:
    """Routes events through the rules, in order; one bad rule never stops the others."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        silences: Sequence[SilenceConfig] = (),
        *,
        inhibit: Sequence[InhibitConfig] = (),
        time_intervals: Sequence[TimeIntervalConfig] = (),
    ) -> None:
        self.rules = tuple(rules)
        self.silences = tuple(silences)
        self.runtime_silences: tuple[RuntimeSilence, ...] = ()
        self._by_name = {rule.name: rule for rule in self.rules}
        self._resolvable = frozenset(rule.resolves for rule in self.rules if rule.resolves)
        self.gates = Gates(self.rules, inhibit, time_intervals)

    def route(self, state: RuleState, events: Sequence[Event], summary: JobSummary | None, now_ms: int) -> Routed:
        """Route a poll's events; returns the notifications due now (immediate ones and closed windows)."""
        summary_data = summary.model_dump(mode="json") if summary is not None else None
        out: list[Notification] = []
        trail = Trail()
        silenced = 0
        for event in events:
            if (ended := ended_job(event)) is not None:  # silenced or not, the job has ended
                self._job_ended(state, ended, now_ms)
            subject = _Subject(event, event.model_dump(mode="json"), summary, summary_data)
            silence = self._silence(subject, now_ms)
            silenced += silence is not None
            for index, rule in enumerate(self.rules):
                # A silenced event is matched only to say which rules it would have reached: its problems are moot.
                if not self._matches(rule, subject, now_ms, trail, quiet=silence is not None):
                    continue
                if silence is not None:
                    evidence = {"by": silence.by, "until_ms": silence.until_ms, "note": silence.note}
                    trail.decide([event], rule.name, Verdict.SILENCED, now_ms, **evidence)
                elif rule.resolves is not None:
                    out.extend(self._resolve(state, rule, subject, now_ms, trail))
                else:
                    self._collect(state, rule, subject, now_ms, trail)
                if not rule.continue_:
                    for later in self.rules[index + 1 :]:
                        if later.catches(event.kind):
                            trail.decide([event], later.name, Verdict.STOPPED, now_ms, by=rule.name)
                        else:  # it would not have caught the event anyway: say so, not that it was stopped
                            self._matches(later, subject, now_ms, trail, quiet=True)
                    break
        out.extend(self._flush(state, now_ms, trail))
        return Routed(tuple(out), silenced, tuple(trail.problems), tuple(trail.dropped), self._in_order(trail, events))

    def _in_order(self, trail: Trail, events: Sequence[Event]) -> tuple[Decision, ...]:
        """The decisions by event, then in the rules' order: a group that left at once is decided when it is
        flushed, after the rules below it (the sort is stable: one rule's decisions about an event keep theirs)."""
        position = {event.id: index for index, event in enumerate(events)}
        order = {rule.name: index for index, rule in enumerate(self.rules)}
        return tuple(
            sorted(trail.decisions, key=lambda d: (position.get(d.event_id, -1), order.get(d.rule, len(order))))
        )

    def flush_due(
        self,
        state: RuleState,
        now_ms: int,
        problems: list[str] | None = None,
        dropped: list[str] | None = None,
        decisions: list[Decision] | None = None,
    ) -> list[Notification]:
        """The timers due by `now_ms`: incidents whose `resolve_after` has passed close, and the notifications of
        every group whose window has closed, oldest window first; at one time, groups that can inhibit others go
        first. `dropped` receives a line per group muted, inhibited or already sent once; `decisions` what became
        of each event of the groups."""
        trail = Trail(
            problems if problems is not None else [],
            dropped if dropped is not None else [],
            decisions if decisions is not None else [],
        )
        self._close_over(state, now_ms)
        return self._flush(state, now_ms, trail)

    def _flush(self, state: RuleState, now_ms: int, trail: Trail) -> list[Notification]:
        # Also at the end of every routing; the incidents' timers only when timers are due (there may be thousands).
        out: list[Notification] = []
        for group in self._due(state, now_ms):
            state.drop_group((group.rule, group.key))
            rule = self._by_name.get(group.rule)
            if rule is None:  # the rule was removed from the config while its window was open
                trail.problems.append(f"dropped a pending group of removed rule {group.rule!r}")
                trail.decide(group.events, group.rule, Verdict.DROPPED, group.due_ms, group_key=group.key)
                continue
            out.extend(self._send(state, rule, group, trail))
        return out

    def _due(self, state: RuleState, now_ms: int) -> list[Group]:
        order = {rule.name: index for index, rule in enumerate(self.rules)}
        return sorted(
            (group for group in state.groups.values() if group.due_ms <= now_ms),
            key=lambda group: (group.due_ms, not self._is_source(group), order.get(group.rule, len(order)), group.key),
        )

    def _is_source(self, group: Group) -> bool:
        rule = self._by_name.get(group.rule)
        return rule is not None and self.gates.is_source(Outgoing(rule, group.events, group.summary, group.due_ms))

    def _send(self, state: RuleState, rule: RuleConfig, group: Group, trail: Trail) -> list[Notification]:
        """The group's notifications, unless muted, inhibited or already sent once; records what sending does."""
        group.events = self.gates.admit(state, Outgoing(rule, group.events, group.summary, group.due_ms), trail)
        if not group.events:
            return []
        notifications = _render(rule, group, "trigger", trail.problems)
        state.sent((group.rule, group.key), group.due_ms)
        for notification in notifications[:1]:
            incident = (rule.name, notification.dedup_key)
            opened = self._opened(rule, group)
            if opened is not None:
                state.open_incident(incident, opened)
            self.gates.sent(state, Outgoing(rule, group.events, group.summary, group.due_ms), incident)
        _decide_sent(trail, rule, group, notifications)
        return notifications

    def _opened(self, rule: RuleConfig, group: Group) -> OpenIncident | None:
        """What a sent group leaves open: a resolvable rule's incident until its resolution; another rule's while
        its jobs have not ended (or, about no job, for `resolve_after`) — nothing once they all have."""
        if rule.name in self._resolvable:
            return OpenIncident(group.due_ms)
        return opened_by(
            group.events, group.summary, group.ended_jobs, at_ms=group.due_ms, resolve_after_ms=rule.resolve_after_ms
        )

    def _close_over(self, state: RuleState, now_ms: int) -> None:
        """Close the incidents whose `resolve_after` has passed — unless a `resolves:` now names their rule (a
        reload, or one recorded before incidents closed by themselves): that one waits for its resolution. One of
        a rule nothing resolves that waits for nothing (its rule was resolvable when it opened) gets the rule's
        `resolve_after` from when it opened."""
        for incident, opened in list(state.incidents.items()):
            rule = self._by_name.get(incident[0])
            if rule is not None and rule.name in self._resolvable:
                if opened.jobs or opened.closes_ms is not None:
                    state.keep_incident(incident, OpenIncident(opened.opened_ms))
                continue
            timed = opened
            if rule is not None and not opened.jobs and opened.closes_ms is None:
                timed = OpenIncident(opened.opened_ms, (), opened.opened_ms + rule.resolve_after_ms)
                state.keep_incident(incident, timed)
            if timed.over_at(now_ms):
                state.close_incident(incident)

    def _job_ended(self, state: RuleState, job_id: str, now_ms: int) -> None:
        """A job ended: the incidents of rules nothing resolves stop waiting for it (closing when it was their
        last), and the groups still holding its events remember it for when they are sent."""
        for incident, opened in list(state.incidents.items()):
            if incident[0] in self._resolvable or job_id not in opened.jobs:
                continue
            rest = opened.without(job_id)
            if rest.jobs or (rest.closes_ms is not None and rest.closes_ms > now_ms):
                state.keep_incident(incident, rest)
            else:
                state.close_incident(incident)
        for group in list(state.groups.values()):
            if group.rule in self._resolvable or job_id in group.ended_jobs:
                continue  # a resolvable rule's incident waits for its resolution, whatever its jobs do
            if any(event.job_id == job_id for event in group.events):
                group.ended_jobs = tuple(sorted({*group.ended_jobs, job_id}))
                state.put_group(group)

    def muted(self, rule: RuleConfig, at_ms: int) -> str | None:
        """Why the rule sends nothing at `at_ms`, or None (see `Gates.muted`)."""
        return self.gates.muted(rule, at_ms)

    @staticmethod
    def next_due_ms(state: RuleState) -> int | None:
        """When the next group window closes or an incident's `resolve_after` passes, if any: the next flush."""
        times = [group.due_ms for group in state.groups.values()]
        closing = next_closing_ms(state.incidents.values())
        return min([*times, closing] if closing is not None else times, default=None)

    def use_runtime_silences(self, silences: Sequence[RuntimeSilence]) -> None:
        """Apply these runtime silences (from the store) beside the config's, from the next events routed on."""
        self.runtime_silences = tuple(silences)

    def _silence(self, subject: _Subject, now_ms: int) -> _Silence | None:
        """The first silence in force that matches the event: the file's first, then the runtime ones."""
        for index, config in enumerate(self.silences):
            if config.active_at(now_ms) and subject.satisfies(config.match):
                until_ms = None if config.until is None else round(config.until.timestamp() * 1000)
                return _Silence(f"silences[{index}]", until_ms, config.comment or None)
        for runtime in self.runtime_silences:
            if runtime.active_at(now_ms) and subject.satisfies(runtime.match):
                note = ": ".join(part for part in (runtime.created_by, runtime.comment) if part)
                return _Silence(runtime.id, runtime.ends_ms, note or None)
        return None

    def _matches(self, rule: RuleConfig, subject: _Subject, now_ms: int, trail: Trail, *, quiet: bool) -> bool:
        """Whether the rule catches the event; if not, the trail says which of `on`, `where`, `when` failed."""
        event = subject.event
        missed = functools.partial(trail.decide, [event], rule.name, Verdict.NOT_MATCHED, now_ms)
        if not rule.catches(event.kind):
            missed(by="on", expected=list(rule.on), seen=event.kind)
            return False
        miss = first_miss(rule.where, subject.event_data, subject.summary_data)
        if miss is not None:
            matcher, value = miss
            seen, note = (None, "the field is missing") if value is MISSING else (evidence(value), None)
            missed(by=f"where.{matcher.path}", expected=evidence(matcher.raw), seen=seen, note=note)
            return False
        if rule.when is None:
            return True
        try:
            holds = rule.when.evaluate(subject.event_data, subject.summary_data)
        except ExpressionError as exc:
            if not quiet:
                trail.problems.append(f"rule {rule.name!r}: when: {exc} (event {event.id} not matched)")
            missed(by="when", expected=rule.when.source, note=str(exc))
            return False
        if not holds:
            missed(by="when", expected=rule.when.source, seen=False)
        return holds

    def _collect(self, state: RuleState, rule: RuleConfig, subject: _Subject, now_ms: int, trail: Trail) -> None:
        key = _group_key(rule, subject)
        group = state.groups.get((rule.name, key))
        if group is not None:
            group.events.append(subject.event)
            group.summary = subject.summary
            state.put_group(group)
        else:
            due_ms = now_ms + rule.group_wait_ms
            last_sent = state.last_sent.get((rule.name, key))
            if rule.repeat_interval_ms and last_sent is not None:
                due_ms = max(due_ms, last_sent + rule.repeat_interval_ms)
            group = Group(rule.name, key, now_ms, due_ms, [subject.event], subject.summary)
            state.put_group(group)
        if group.due_ms <= now_ms:  # it leaves in this very call: that decision follows
            return
        held = functools.partial(trail.decide, [subject.event], rule.name, until_ms=group.due_ms, group_key=key)
        if group.due_ms > group.opened_ms + rule.group_wait_ms:  # a repeat interval holds it beyond its window
            held(Verdict.REPEAT, now_ms, since_ms=state.last_sent.get((rule.name, key)))
        else:
            held(Verdict.HELD, now_ms)

    def _resolve(
        self, state: RuleState, rule: RuleConfig, subject: _Subject, now_ms: int, trail: Trail
    ) -> list[Notification]:
        target = self._by_name[rule.resolves or ""]
        event = subject.event
        context = _context(target, [event], subject.summary)
        dedup_key = _render_or(target.dedup_key, context, "", trail.problems)
        _cancel_pending(state, target, dedup_key, resolver=rule.name, now_ms=now_ms, trail=trail)
        if not state.close_incident((target.name, dedup_key)):
            trail.decide([event], rule.name, Verdict.NOT_OPEN, now_ms, by=target.name, seen=dedup_key)
            return []
        mute = self.gates.mute(rule, now_ms)
        if mute is not None:  # the incident is closed all the same: muting drops, it does not delay
            trail.dropped.append(f"muted rule {rule.name!r}: {events_of([event])} ({mute})")
            trail.decide([event], rule.name, mute.verdict, now_ms, by=mute.intervals, until_ms=mute.until_ms)
            return []
        resolution = Group(rule.name, dedup_key, now_ms, now_ms, [event], subject.summary)
        notifications = _render(rule, resolution, "resolve", trail.problems, dedup_key=dedup_key)
        _decide_sent(trail, rule, resolution, notifications)
        return notifications


@dataclass(frozen=True)
class _Subject:
    """One event being routed, with its data and its job's summary as matchers see them."""

    event: Event
    event_data: Mapping[str, Any]
    summary: JobSummary | None
    summary_data: Mapping[str, Any] | None

    def satisfies(self, matchers: Mapping[str, Any]) -> bool:
        return all(matcher.matches(self.event_data, self.summary_data) for matcher in matchers.values())


def _group_key(rule: RuleConfig, subject: _Subject) -> str:
    parts = []
    for path in rule.group_by:
        value = resolve(path, subject.event_data, subject.summary_data)
        parts.append("" if value is MISSING or value is None else str(value))
    return "\x1f".join(parts)


def _cancel_pending(
    state: RuleState, target: RuleConfig, dedup_key: str, *, resolver: str, now_ms: int, trail: Trail
) -> None:
    """A resolution before the trigger left its window: the trigger's events with that key never go out."""
    for group_id, group in list(state.groups.items()):
        if group.rule != target.name:
            continue
        kept = [
            event
            for event in group.events
            if _render_or(target.dedup_key, _context(target, [event], group.summary), "", trail.problems) != dedup_key
        ]
        canceled = [event for event in group.events if event not in kept]
        trail.decide(canceled, target.name, Verdict.CANCELED, now_ms, by=resolver, group_key=group.key)
        if not kept:
            state.drop_group(group_id)
        elif len(kept) != len(group.events):
            group.events = kept
            state.put_group(group)


def _decide_sent(trail: Trail, rule: RuleConfig, group: Group, notifications: Sequence[Notification]) -> None:
    sent_to = tuple((n.notifier, n.id) for n in notifications)
    trail.decide(group.events, rule.name, Verdict.SENT, group.due_ms, group_key=group.key, sent_to=sent_to)


def _context(rule: RuleConfig, events: Sequence[Event], summary: JobSummary | None) -> dict[str, Any]:
    return template_context(rule=rule.name, severity=rule.severity, events=events, summary=summary)


def _render_or(template: Template | None, context: Mapping[str, Any], fallback: str, problems: list[str]) -> str:
    if template is None:
        return fallback
    try:
        return template.render(context)
    except TemplateError as exc:
        problems.append(f"rule {context['rule']!r}: {exc}; used the default")
        return fallback


def _render(
    rule: RuleConfig, group: Group, action: str, problems: list[str], *, dedup_key: str | None = None
) -> list[Notification]:
    """The group's notifications, one per notifier of the rule, created when the window closed."""
    events, summary, group_key, created_ms = group.events, group.summary, group.key, group.due_ms
    context = _context(rule, events, summary)
    title = _render_or(rule.title, context, default_title(events, summary), problems)
    text = _render_or(rule.text, context, default_text(events), problems)
    if dedup_key is None:
        dedup_key = _render_or(rule.dedup_key, context, f"{rule.name}:{events[0].job_id}", problems)
    return [
        Notification(
            id=notification_id(rule.name, notifier, group_key, events[0].id, action),
            rule=rule.name,
            notifier=notifier,
            severity=rule.severity,
            action="resolve" if action == "resolve" else "trigger",
            group_key=group_key,
            dedup_key=dedup_key,
            created_ms=created_ms,
            title=title,
            text=text,
            events=tuple(events),
            summary=summary,
        )
        for notifier in rule.notify
    ]
