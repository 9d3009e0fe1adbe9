"""What a notification meets on its way out, in order: time intervals (muted → dropped), inhibition (event by
event), `once_per`; and what sending one changes (the inhibition sources it makes active).

Pure given the rule state, like the rest of routing; the state is reached through the small `GateState` protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rules.config import InhibitConfig, RuleConfig
from rules.incidents import Incident, OpenIncident
from rules.inhibit import Inhibitions, Inhibitor, InhibitorKey, seen
from rules.templates import TemplateError, template_context
from rules.timeintervals import TimeIntervalConfig
from rules.trail import Trail
from watcher.core.decisions import Verdict
from watcher.core.events import Event
from watcher.core.summary import JobSummary


class GateState(Protocol):
    """The parts of the rule state the gates read and change."""

    incidents: dict[tuple[str, str], OpenIncident]
    inhibitors: dict[InhibitorKey, Inhibitor]
    once: dict[tuple[str, str], int]

    def activate(self, key: InhibitorKey, inhibitor: Inhibitor | None) -> None:
        """Record an inhibition source as active (None: no longer)."""
        ...

    def remember_once(self, rule_value: tuple[str, str], at_ms: int) -> None:
        """Remember that a `once_per` rule has sent for this value."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """A group about to leave: its rule, events, job summary and the time its window closes."""

    rule: RuleConfig
    events: Sequence[Event]
    summary: JobSummary | None
    at_ms: int

    def seen(self) -> list[Any]:
        """Each event as inhibition matchers see it."""
        summary = self.summary.model_dump(mode="json") if self.summary is not None else None
        return [seen(e.model_dump(mode="json"), summary, self.rule.name, self.rule.severity) for e in self.events]


@dataclass(frozen=True)
class Mute:
    """Why a rule sends nothing at some moment: in a mute interval, or outside its active ones; and until when."""

    verdict: Verdict  # MUTED or INACTIVE
    intervals: str  # the mute interval's name, or the active intervals' names
    until_ms: int | None  # when the mute interval ends, or the next active one starts (None: not within a year)

    def __str__(self) -> str:
        if self.verdict == Verdict.MUTED:
            return f"in mute time interval {self.intervals!r}"
        return f"outside active time intervals {self.intervals}"


class Gates:
    """Time intervals, inhibitions and `once_per`, for the rules of one config."""

    def __init__(
        self,
        rules: Sequence[RuleConfig],
        inhibit: Sequence[InhibitConfig],
        time_intervals: Sequence[TimeIntervalConfig],
    ) -> None:
        self.inhibitions = Inhibitions(inhibit, {rule.resolves for rule in rules if rule.resolves})
        self.time_intervals = {interval.name: interval for interval in time_intervals}

    def muted(self, rule: RuleConfig, at_ms: int) -> str | None:
        """Why the rule sends nothing at `at_ms` (a mute interval it is in, or outside its active ones), or None."""
        mute = self.mute(rule, at_ms)
        return None if mute is None else str(mute)

    def mute(self, rule: RuleConfig, at_ms: int) -> Mute | None:
        """Why the rule sends nothing at `at_ms`, and until when; None when it may send."""
        for name in rule.mute_time_intervals:
            interval = self.time_intervals.get(name)
            if interval is not None and interval.contains(at_ms):
                return Mute(Verdict.MUTED, name, interval.next_change_ms(at_ms))
        active = [self.time_intervals[name] for name in rule.active_time_intervals if name in self.time_intervals]
        if active and not any(interval.contains(at_ms) for interval in active):
            starts = [start for interval in active if (start := interval.next_change_ms(at_ms)) is not None]
            return Mute(Verdict.INACTIVE, ", ".join(rule.active_time_intervals), min(starts, default=None))
        return None

    def is_source(self, outgoing: Outgoing) -> bool:
        """Whether sending this group could make an inhibition active (such groups leave first)."""
        return bool(self.inhibitions.entries) and any(map(self.inhibitions.any_source, outgoing.seen()))

    def admit(self, state: GateState, outgoing: Outgoing, trail: Trail) -> list[Event]:
        """The events that may leave now (none: the group is dropped); the trail says why the others may not."""
        rule, at_ms = outgoing.rule, outgoing.at_ms
        about = f"rule {rule.name!r}: {events_of(outgoing.events)}"
        mute = self.mute(rule, at_ms)
        if mute is not None:
            trail.dropped.append(f"muted {about} ({mute})")
            trail.decide(outgoing.events, rule.name, mute.verdict, at_ms, by=mute.intervals, until_ms=mute.until_ms)
            return []
        events = self._uninhibited(state, outgoing, trail)
        if events and rule.once_per is not None:
            kept = Outgoing(rule, events, outgoing.summary, at_ms)
            value = _sent_before(state, kept, trail.problems)
            if value is not None:
                trail.dropped.append(f"once_per {about} (already sent for this value)")
                since_ms = state.once[(rule.name, value)]
                trail.decide(events, rule.name, Verdict.ONCE_PER, at_ms, by="once_per", seen=value, since_ms=since_ms)
                return []
        return events

    def sent(self, state: GateState, outgoing: Outgoing, incident: Incident) -> None:
        """A group was sent, opening `incident`: the sources among its events become active."""
        if not self.inhibitions.entries:
            return
        for key, inhibitor in list(state.inhibitors.items()):  # forget the sources no longer in force
            if not self.inhibitions.holds(key[0], inhibitor, state.incidents, outgoing.at_ms):
                state.activate(key, None)
        for subject in outgoing.seen():
            for key in self.inhibitions.sources(subject):
                earlier = state.inhibitors.get(key)
                incidents = {inc for inc in (earlier.incidents if earlier else ()) if inc in state.incidents}
                state.activate(key, Inhibitor(outgoing.at_ms, tuple(sorted(incidents | {incident}))))

    def _uninhibited(self, state: GateState, outgoing: Outgoing, trail: Trail) -> list[Event]:
        if not self.inhibitions.entries:
            return list(outgoing.events)
        kept: list[Event] = []
        by: dict[str, list[Event]] = {}
        at_ms = outgoing.at_ms
        for event, subject in zip(outgoing.events, outgoing.seen(), strict=True):
            found = self.inhibitions.inhibiting(subject, state.inhibitors, state.incidents, at_ms)
            if found is None:
                kept.append(event)
                continue
            label, inhibitor = found
            by.setdefault(label, []).append(event)
            open_incidents = self.inhibitions.open_incidents(inhibitor, state.incidents)
            incidents = tuple(f"{rule}/{key}" for rule, key in open_incidents)
            for_ms = self.inhibitions.for_ms(label)
            trail.decide(
                [event],
                outgoing.rule.name,
                Verdict.INHIBITED,
                at_ms,
                by=label,
                since_ms=inhibitor.sent_ms,
                until_ms=inhibitor.sent_ms + for_ms if for_ms and not incidents else None,
                incidents=incidents,
            )
        for label, events in by.items():
            trail.dropped.append(f"inhibited rule {outgoing.rule.name!r}: {events_of(events)} (by inhibit {label!r})")
        return kept


def events_of(events: Sequence[Event]) -> str:
    """`3 events of nightly-7`, for the lines saying what was not sent."""
    names = sorted({event.job_name for event in events})
    return f"{len(events)} event{'s' if len(events) != 1 else ''} of {', '.join(names) or 'no job'}"


def _sent_before(state: GateState, outgoing: Outgoing, problems: list[str]) -> str | None:
    """The rule's `once_per` value if it has already sent for it; else None, and the value is remembered. A
    template that fails to render does not hold the notification back."""
    rule = outgoing.rule
    context: Mapping[str, Any] = template_context(
        rule=rule.name, severity=rule.severity, events=outgoing.events, summary=outgoing.summary
    )
    try:
        value = rule.once_per.render(context) if rule.once_per is not None else ""
    except TemplateError as exc:
        problems.append(f"rule {rule.name!r}: once_per: {exc}; sent anyway")
        return None
    if (rule.name, value) in state.once:
        return value
    state.remember_once((rule.name, value), outgoing.at_ms)
    return None
