"""What routing notes on its way, beside the notifications: problems (logged), dropped groups (one line each, for
`replay`'s notes and the log) and the decisions per event × rule (for `explain` and `benchwatch test`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from watcher.core.decisions import Decision, Verdict
from watcher.core.events import Event

MAX_SEEN_CHARS: Final = 200  # a value a matcher saw is evidence, not a copy of the summary


@dataclass
class Trail:
    """The notes of one routing or flushing call."""

    problems: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def decide(self, events: Iterable[Event], rule: str, verdict: Verdict, at_ms: int, **evidence: Any) -> None:
        """The same decision for each of `events`."""
        self.decisions.extend(Decision(event.id, rule, verdict, at_ms, **evidence) for event in events)


def evidence(value: Any) -> Any:
    """A value as a decision keeps it: itself when small, else the start of its JSON text."""
    text = json.dumps(value, default=str)
    return value if len(text) <= MAX_SEEN_CHARS else text[: MAX_SEEN_CHARS - 1] + "…"
