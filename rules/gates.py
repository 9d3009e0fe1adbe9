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
        for name in rule.mute_time_intervals:
            interval = self.time_intervals.get(name)
            if interval is not None and interval.contains(at_ms):
                return f"in mute time interval {name!r}"
        active = [self.time_intervals[name] for name in rule.active_time_intervals if name in self.time_intervals]
        if active and not any(interval.contains(at_ms) for interval in active):
            return f"outside active time intervals {', '.join(rule.active_time_intervals)}"
        return None

    def is_source(self, outgoing: Outgoing) -> bool:
        """Whether sending this group could make an inhibition active (such groups leave first)."""
        return bool(self.inhibitions.entries) and any(map(self.inhibitions.any_source, outgoing.seen()))

    def admit(self, state: GateState, outgoing: Outgoing, problems: list[str], dropped: list[str]) -> list[Event]:
        """The events that may leave now (none: the group is dropped); `dropped` says why the others may not."""
        rule = outgoing.rule
        about = f"rule {rule.name!r}: {events_of(outgoing.events)}"
        muted = self.muted(rule, outgoing.at_ms)
        if muted is not None:
            dropped.append(f"muted {about} ({muted})")
            return []
        events = self._uninhibited(state, outgoing, dropped)
        if events and rule.once_per is not None:
            kept = Outgoing(rule, events, outgoing.summary, outgoing.at_ms)
            if not _first_time(state, kept, problems):
                dropped.append(f"once_per {about} (already sent for this value)")
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

    def _uninhibited(self, state: GateState, outgoing: Outgoing, dropped: list[str]) -> list[Event]:
        if not self.inhibitions.entries:
            return list(outgoing.events)
        kept: list[Event] = []
        by: dict[str, list[Event]] = {}
        for event, subject in zip(outgoing.events, outgoing.seen(), strict=True):
            label = self.inhibitions.inhibiting(subject, state.inhibitors, state.incidents, outgoing.at_ms)
            if label is None:
                kept.append(event)
            else:
                by.setdefault(label, []).append(event)
        for label, events in by.items():
            dropped.append(f"inhibited rule {outgoing.rule.name!r}: {events_of(events)} (by inhibit {label!r})")
        return kept


def events_of(events: Sequence[Event]) -> str:
    """`3 events of nightly-7`, for the lines saying what was not sent."""
    names = sorted({event.job_name for event in events})
    return f"{len(events)} event{'s' if len(events) != 1 else ''} of {', '.join(names) or 'no job'}"


def _first_time(state: GateState, outgoing: Outgoing, problems: list[str]) -> bool:
    """Whether the rule has not yet sent for its `once_per` value, which is then remembered; a template that
    fails to render does not hold the notification back."""
    rule = outgoing.rule
    context: Mapping[str, Any] = template_context(
        rule=rule.name, severity=rule.severity, events=outgoing.events, summary=outgoing.summary
    )
    try:
        value = rule.once_per.render(context) if rule.once_per is not None else ""
    except TemplateError as exc:
        problems.append(f"rule {rule.name!r}: once_per: {exc}; sent anyway")
        return True
    if (rule.name, value) in state.once:
        return False
    state.remember_once((rule.name, value), outgoing.at_ms)
    return True
