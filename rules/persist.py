"""Rule state ↔ store rows: group windows, last sends, open incidents, active inhibition sources and the values
`once_per` rules have sent for survive a restart."""

from __future__ import annotations

import json
from typing import Final, Protocol

from pydantic import BaseModel, ConfigDict

from rules.engine import Group, RuleState, RuleStateChanges
from rules.inhibit import Inhibitor
from watcher.core.events import Event
from watcher.core.records import StateRow
from watcher.core.summary import JobSummary


class StateRows(Protocol):
    """What loading rule state needs of the store."""

    async def load_state_rows(self, namespace: str) -> list[StateRow]:
        """Every state row of a namespace."""
        ...


GROUPS: Final = "rules.group"
SENDS: Final = "rules.sent"
INCIDENTS: Final = "rules.incident"
INHIBITORS: Final = "rules.inhibitor"
ONCE: Final = "rules.once"
# Replicas: a counter moved on by every commit that changes the rule state (under the rule-state lock), so a
# replica re-reads the whole state only when another one changed it since its own last read or write.
VERSION: Final = "rules.version"
VERSION_KEY: Final = "version"
_SEP: Final = "\x1f"


class _GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str
    key: str
    opened_ms: int
    due_ms: int
    events: list[Event]
    summary: JobSummary | None


def _key(pair: tuple[str, str]) -> str:
    return f"{pair[0]}{_SEP}{pair[1]}"


def _pair(key: str) -> tuple[str, str]:
    rule, _, rest = key.partition(_SEP)
    return rule, rest


def rows_for(changes: RuleStateChanges) -> list[StateRow]:
    """The store rows that record `changes` (a None body deletes)."""
    rows = []
    for group_id, group in changes.groups:
        body = None
        if group is not None:
            body = _GroupBody(
                rule=group.rule,
                key=group.key,
                opened_ms=group.opened_ms,
                due_ms=group.due_ms,
                events=group.events,
                summary=group.summary,
            ).model_dump_json()
        rows.append(StateRow(GROUPS, _key(group_id), body))
    rows.extend(StateRow(SENDS, _key(group_id), json.dumps(at_ms)) for group_id, at_ms in changes.last_sent)
    rows.extend(
        StateRow(INCIDENTS, _key(incident), None if at_ms is None else json.dumps(at_ms))
        for incident, at_ms in changes.incidents
    )
    rows.extend(
        StateRow(INHIBITORS, _key(key), None if inhibitor is None else _inhibitor_body(inhibitor))
        for key, inhibitor in changes.inhibitors
    )
    rows.extend(StateRow(ONCE, _key(key), json.dumps(at_ms)) for key, at_ms in changes.once)
    return rows


def _inhibitor_body(inhibitor: Inhibitor) -> str:
    return json.dumps({"sent_ms": inhibitor.sent_ms, "incidents": [list(pair) for pair in inhibitor.incidents]})


def _inhibitor(body: str) -> Inhibitor:
    data = json.loads(body)
    return Inhibitor(int(data["sent_ms"]), tuple((str(rule), str(key)) for rule, key in data["incidents"]))


async def load_rule_state(store: StateRows) -> RuleState:
    """The rule state as the store last committed it."""
    state = RuleState()
    for row in await store.load_state_rows(GROUPS):
        body = _GroupBody.model_validate_json(row.body or "{}")
        state.groups[_pair(row.key)] = Group(
            body.rule, body.key, body.opened_ms, body.due_ms, list(body.events), body.summary
        )
    for row in await store.load_state_rows(SENDS):
        state.last_sent[_pair(row.key)] = int(json.loads(row.body or "0"))
    for row in await store.load_state_rows(INCIDENTS):
        state.incidents[_pair(row.key)] = int(json.loads(row.body or "0"))
    for row in await store.load_state_rows(INHIBITORS):
        state.inhibitors[_pair(row.key)] = _inhibitor(row.body or '{"sent_ms": 0, "incidents": []}')
    for row in await store.load_state_rows(ONCE):
        state.once[_pair(row.key)] = int(json.loads(row.body or "0"))
    return state
