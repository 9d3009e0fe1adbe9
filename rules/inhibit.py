"""Inhibition (`inhibit:`): while a source is active, events matching a target with equal values are dropped.

A source becomes active when a notification is sent whose event matches `source:`; it stays active while the
incident that notification opened is open (for rules some `resolves:` rule can close) or for `for:` after it was
sent. Matchers of both sides see the event, the job's summary, and the `rule` and `severity` of the rule notifying.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rules.config import InhibitConfig
from rules.incidents import Incident
from rules.match import MISSING, FieldMatcher, resolve


@dataclass(frozen=True)
class Inhibitor:
    """An active source: when its last notification was sent and the incidents it opened."""

    sent_ms: int
    incidents: tuple[Incident, ...]


InhibitorKey = tuple[str, str]  # (inhibit label, equal values as JSON)


@dataclass(frozen=True)
class Seen:
    """An event as both sides of an inhibition see it: its fields plus the notifying rule, and the summary."""

    data: Mapping[str, Any]
    summary: Mapping[str, Any] | None

    def satisfies(self, matchers: Mapping[str, FieldMatcher]) -> bool:
        """Whether every matcher holds."""
        return all(matcher.matches(self.data, self.summary) for matcher in matchers.values())

    def values(self, paths: Sequence[str]) -> str:
        """The values of the `equal` fields, as a key (a missing field equals a missing or null one)."""
        found = [resolve(path, self.data, self.summary) for path in paths]
        return json.dumps([None if value is MISSING else value for value in found], sort_keys=True)


def seen(event_data: Mapping[str, Any], summary: Mapping[str, Any] | None, rule: str, severity: str) -> Seen:
    """An event as inhibition matchers see it, for a rule about to notify."""
    return Seen({**event_data, "rule": rule, "severity": severity}, summary)


class Inhibitions:
    """The `inhibit:` entries, with what they need to know of the rules: which incidents can close."""

    def __init__(self, entries: Sequence[InhibitConfig], resolvable_rules: set[str]) -> None:
        self.entries = tuple(entries)
        self._labels = tuple(entry.label() for entry in self.entries)
        self._by_label = dict(zip(self._labels, self.entries, strict=True))
        self._resolvable = resolvable_rules

    def any_source(self, subject: Seen) -> bool:
        """Whether the event matches some entry's source (such notifications are sent first)."""
        return any(subject.satisfies(entry.source) for entry in self.entries)

    def sources(self, subject: Seen) -> list[InhibitorKey]:
        """The inhibitors a notification carrying this event makes active."""
        return [
            (label, subject.values(entry.equal))
            for label, entry in zip(self._labels, self.entries, strict=True)
            if subject.satisfies(entry.source)
        ]

    def inhibiting(
        self,
        subject: Seen,
        inhibitors: Mapping[InhibitorKey, Inhibitor],
        open_incidents: Mapping[Incident, object],
        now_ms: int,
    ) -> tuple[str, Inhibitor] | None:
        """The label of an entry that drops this event now and its active source, if any; an event never
        inhibits itself."""
        for label, entry in zip(self._labels, self.entries, strict=True):
            if not subject.satisfies(entry.target) or subject.satisfies(entry.source):
                continue
            inhibitor = inhibitors.get((label, subject.values(entry.equal)))
            if inhibitor is not None and self.holds(label, inhibitor, open_incidents, now_ms):
                return label, inhibitor
        return None

    def open_incidents(self, inhibitor: Inhibitor, open_incidents: Mapping[Incident, object]) -> list[Incident]:
        """The incidents that keep an inhibitor in force (beyond its `for`)."""
        return [inc for inc in inhibitor.incidents if inc[0] in self._resolvable and inc in open_incidents]

    def for_ms(self, label: str) -> int:
        """How long an entry's source stays active after it was sent, at least."""
        entry = self._by_label.get(label)
        return entry.for_ms if entry is not None else 0

    def holds(self, label: str, inhibitor: Inhibitor, open_incidents: Mapping[Incident, object], now_ms: int) -> bool:
        """Whether an inhibitor is still in force: within `for` of its last send, or one of its incidents open.

        Only incidents of rules that some `resolves:` rule closes count: the others never close, and would
        inhibit for ever.
        """
        entry = self._by_label.get(label)
        if entry is None:  # the entry was removed from the config
            return False
        if now_ms < inhibitor.sent_ms + entry.for_ms:
            return True
        return bool(self.open_incidents(inhibitor, open_incidents))
