"""What routing decided for one event and one rule, and why: the answer to "why was this sent, or not?".

The rules engine produces a `Decision` per event × rule as it routes (matched and held in a window, not matched and
which matcher failed on which value, silenced by which silence, …) and another when the event's group leaves
(sent as which notifications, or muted, inhibited, once_per). The tracker commits them with the event, so
`benchwatch explain` tells what really happened, not what today's config would do. Data only: `describe` words
them, so the wording can improve without touching what is stored.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final


class Verdict(StrEnum):
    """What became of an event for one rule."""

    NOT_MATCHED = "not_matched"  # `on`, a `where` matcher or `when` did not hold
    STOPPED = "stopped"  # an earlier rule with `continue: false` took the event
    SILENCED = "silenced"  # the rule matched; a silence dropped the event
    HELD = "held"  # matched; waiting in a group window until `until_ms`
    REPEAT = "repeat"  # matched; held back by `repeat_interval` (last sent `since_ms`) until `until_ms`
    MUTED = "muted"  # its group was dropped in a mute time interval (ending `until_ms`)
    INACTIVE = "inactive"  # its group was dropped outside the rule's active time intervals (next one `until_ms`)
    INHIBITED = "inhibited"  # dropped by an inhibition whose source was sent `since_ms`
    ONCE_PER = "once_per"  # dropped: the rule already sent for this `once_per` value (`since_ms`)
    CANCELED = "canceled"  # a resolution closed the incident before the window did
    NOT_OPEN = "not_open"  # a `resolves:` rule matched, but no incident of its target was open
    DROPPED = "dropped"  # the rule was removed from the config while its window was open
    SENT = "sent"  # left as the notifications in `sent_to`


# Verdicts that end an event's way through a rule: nothing more is decided for it there.
FINAL: Final = frozenset(Verdict) - {Verdict.HELD, Verdict.REPEAT}


@dataclass(frozen=True, slots=True)
class Decision:
    """One event × rule decision. `by` names what decided (a matcher's path, `on`, `when`, a silence, an
    inhibition, a time interval, a rule); the other fields are its evidence."""

    event_id: str
    rule: str
    verdict: Verdict
    at_ms: int
    by: str | None = None
    seen: Any = None  # not_matched: the value the matcher saw; once_per: the rendered value
    expected: Any = None  # not_matched: what the matcher wanted
    note: str | None = None  # a silence's creator and comment, a `when` that failed to evaluate, …
    since_ms: int | None = None
    until_ms: int | None = None
    group_key: str | None = None
    incidents: tuple[str, ...] = ()  # inhibited: the source's open incidents, `rule/dedup key`
    sent_to: tuple[tuple[str, str], ...] = field(default=())  # sent: (notifier, notification id)

    def to_json(self) -> dict[str, Any]:
        """The decision without its event id and defaults: compact, as the store keeps it."""
        data: dict[str, Any] = {"rule": self.rule, "verdict": self.verdict.value, "at_ms": self.at_ms}
        for name in ("by", "seen", "expected", "note", "since_ms", "until_ms", "group_key"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        if self.incidents:
            data["incidents"] = list(self.incidents)
        if self.sent_to:
            data["sent_to"] = [list(pair) for pair in self.sent_to]
        return data

    @classmethod
    def from_json(cls, event_id: str, data: dict[str, Any]) -> Decision:
        """A decision as `to_json` wrote it."""
        return cls(
            event_id=event_id,
            rule=str(data["rule"]),
            verdict=Verdict(data["verdict"]),
            at_ms=int(data["at_ms"]),
            by=data.get("by"),
            seen=data.get("seen"),
            expected=data.get("expected"),
            note=data.get("note"),
            since_ms=data.get("since_ms"),
            until_ms=data.get("until_ms"),
            group_key=data.get("group_key"),
            incidents=tuple(str(i) for i in data.get("incidents", ())),
            sent_to=tuple((str(n), str(i)) for n, i in data.get("sent_to", ())),
        )


def decisions_body(decisions: Sequence[Decision]) -> str:
    """One event's decisions of one commit, as the store's row body — compactly, since most events meet most rules
    only to be turned away by `on`: those rules are listed by name alone (`{"not_listening": [...]}`: what `on`
    wanted is the rule's, what it saw the event's own kind), and a time equal to the one before is left out."""
    items: list[dict[str, Any]] = []
    previous_ms = None
    for decision in decisions:
        listening = not (decision.verdict == Verdict.NOT_MATCHED and decision.by == "on")
        if not listening and items and "not_listening" in items[-1] and decision.at_ms == previous_ms:
            items[-1]["not_listening"].append(decision.rule)
            continue
        item = decision.to_json() if listening else {"not_listening": [decision.rule], "at_ms": decision.at_ms}
        if item["at_ms"] == previous_ms:
            del item["at_ms"]
        previous_ms = decision.at_ms
        items.append(item)
    return json.dumps(items, separators=(",", ":"), default=str)


def decisions_from_body(event_id: str, body: str) -> list[Decision]:
    """The decisions a row body holds (a missing time is the one before)."""
    decisions: list[Decision] = []
    for item in json.loads(body):
        at_ms = int(item.get("at_ms", decisions[-1].at_ms if decisions else 0))
        if "not_listening" in item:
            decisions += [
                Decision(event_id, str(rule), Verdict.NOT_MATCHED, at_ms, by="on") for rule in item["not_listening"]
            ]
        else:
            decisions.append(Decision.from_json(event_id, {**item, "at_ms": at_ms}))
    return decisions


def by_event(decisions: Sequence[Decision]) -> dict[str, list[Decision]]:
    """Decisions grouped by event id, each event's in the order they were taken."""
    grouped: dict[str, list[Decision]] = {}
    for decision in decisions:
        grouped.setdefault(decision.event_id, []).append(decision)
    return grouped


def when(ms: int | None) -> str:
    """A time as explanations print it (UTC, to the second)."""
    return "?" if ms is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def _value(value: Any) -> str:
    return json.dumps(value, default=str)


def describe(decision: Decision) -> str:
    """The decision in one line: what was decided, by what, on which evidence."""
    d = decision
    text = _DESCRIBERS[d.verdict](d)
    return f"{text} ({d.note})" if d.note else text


def _not_matched(d: Decision) -> str:
    if d.by == "on":
        wanted = f" {_value(d.expected)}" if d.expected is not None else ""
        return f"not matched: on:{wanted} does not catch {d.seen or 'this kind'}"
    if d.by == "when":
        return f"not matched: when: {d.expected} is {_value(d.seen)}"
    return f"not matched: {d.by}: {_value(d.expected)} does not hold for {_value(d.seen)}"


def _silenced(d: Decision) -> str:
    until = "for ever" if d.until_ms is None else f"until {when(d.until_ms)}"
    return f"matched, but silenced by {d.by} {until}"


def _sent(d: Decision) -> str:
    to = ", ".join(f"{notifier} ({notification_id})" for notifier, notification_id in d.sent_to)
    return f"sent to {to}" if to else "sent"


def _inhibited(d: Decision) -> str:
    source = f" while {', '.join(d.incidents)} is open" if d.incidents else ""
    until = f" (in force until {when(d.until_ms)})" if d.until_ms is not None else ""
    return f"inhibited by {d.by!r}: its source was sent {when(d.since_ms)}{source}{until}"


_DESCRIBERS = {
    Verdict.NOT_MATCHED: _not_matched,
    Verdict.STOPPED: lambda d: f"not seen: rule {d.by!r} matched first and has continue: false",
    Verdict.SILENCED: _silenced,
    Verdict.HELD: lambda d: f"matched; held in its group window until {when(d.until_ms)}",
    Verdict.REPEAT: lambda d: (
        f"matched; held by repeat_interval (last sent {when(d.since_ms)}) until {when(d.until_ms)}"
    ),
    Verdict.MUTED: lambda d: f"muted: in mute time interval {d.by!r} (it ends {when(d.until_ms)})",
    Verdict.INACTIVE: lambda d: f"not sent: outside active time intervals {d.by} (next active {when(d.until_ms)})",
    Verdict.INHIBITED: _inhibited,
    Verdict.ONCE_PER: lambda d: f"not sent: once_per {_value(d.seen)} was already sent {when(d.since_ms)}",
    Verdict.CANCELED: lambda d: f"canceled: {d.by!r} resolved the incident before the window closed",
    Verdict.NOT_OPEN: lambda d: f"nothing to resolve: no open incident of {d.by!r} with key {_value(d.seen)}",
    Verdict.DROPPED: lambda d: "dropped: the rule was removed while its window was open",
    Verdict.SENT: _sent,
}
