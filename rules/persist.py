"""Rule state ↔ store rows: group windows, last sends, open incidents, active inhibition sources and the values
`once_per` rules have sent for survive a restart."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, Protocol

from pydantic import BaseModel, ConfigDict

from rules.config import DEFAULT_RESOLVE_AFTER_MS
from rules.engine import Group, RuleState, RuleStateChanges
from rules.incidents import OpenIncident
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
# Replicas: a counter moved on by every commit that changes the rule state (under the rule-state lock), and a log of
# what each version changed, so a replica brings its copy up to date with the rows the others changed since its
# last read or write — not by reading every group, send and incident again (tens of thousands with many jobs).
VERSION: Final = "rules.version"
VERSION_KEY: Final = "version"
LOG: Final = "rules.log"
# Versions of log kept; further behind, a replica reads the whole state. Three replicas on `many` commit about a hundred
# versions a second between them: a replica whose turn waited a second was past a log of 100 and read it all again.
LOG_KEPT: Final = 1000
_SEP: Final = "\x1f"


class _GroupBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: str
    key: str
    opened_ms: int
    due_ms: int
    events: list[Event]
    summary: JobSummary | None
    ended_jobs: tuple[str, ...] = ()


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
                ended_jobs=group.ended_jobs,
            ).model_dump_json()
        rows.append(StateRow(GROUPS, _key(group_id), body))
    rows.extend(StateRow(SENDS, _key(group_id), json.dumps(at_ms)) for group_id, at_ms in changes.last_sent)
    rows.extend(
        StateRow(INCIDENTS, _key(incident), None if opened is None else _incident_body(opened))
        for incident, opened in changes.incidents
    )
    rows.extend(
        StateRow(INHIBITORS, _key(key), None if inhibitor is None else _inhibitor_body(inhibitor))
        for key, inhibitor in changes.inhibitors
    )
    rows.extend(StateRow(ONCE, _key(key), json.dumps(at_ms)) for key, at_ms in changes.once)
    return rows


def _incident_body(opened: OpenIncident) -> str:
    return json.dumps({"opened_ms": opened.opened_ms, "jobs": list(opened.jobs), "closes_ms": opened.closes_ms})


def _incident(body: str) -> OpenIncident:
    data = json.loads(body)
    if isinstance(data, int):  # written before incidents closed by themselves: the time it opened. It closes
        # `resolve_after` later (the default), unless a `resolves:` names its rule (then `Router.flush_due` keeps it).
        return OpenIncident(data, (), data + DEFAULT_RESOLVE_AFTER_MS)
    closes_ms = data.get("closes_ms")
    jobs = tuple(str(job) for job in data.get("jobs", ()))
    return OpenIncident(int(data["opened_ms"]), jobs, None if closes_ms is None else int(closes_ms))


def _inhibitor_body(inhibitor: Inhibitor) -> str:
    return json.dumps({"sent_ms": inhibitor.sent_ms, "incidents": [list(pair) for pair in inhibitor.incidents]})


def _inhibitor(body: str) -> Inhibitor:
    data = json.loads(body)
    return Inhibitor(int(data["sent_ms"]), tuple((str(rule), str(key)) for rule, key in data["incidents"]))


async def load_rule_state(store: StateRows) -> RuleState:
    """The rule state as the store last committed it."""
    state = RuleState()
    for namespace in (GROUPS, SENDS, INCIDENTS, INHIBITORS, ONCE):
        for row in await store.load_state_rows(namespace):
            apply_row(state, row)
    return state


def apply_row(state: RuleState, row: StateRow) -> None:
    """One stored row into `state`, as the store holds it now (a None body: the row was deleted). Not recorded as
    a change of this replica's: another one committed it."""
    pair = _pair(row.key)
    tables: dict[str, dict[tuple[str, str], Any]] = {
        GROUPS: state.groups,
        SENDS: state.last_sent,
        INCIDENTS: state.incidents,
        INHIBITORS: state.inhibitors,
        ONCE: state.once,
    }
    table = tables[row.namespace]
    if row.body is None:
        table.pop(pair, None)
    elif row.namespace == GROUPS:
        body = _GroupBody.model_validate_json(row.body)
        table[pair] = Group(
            body.rule, body.key, body.opened_ms, body.due_ms, list(body.events), body.summary, body.ended_jobs
        )
    elif row.namespace == INHIBITORS:
        table[pair] = _inhibitor(row.body)
    elif row.namespace == INCIDENTS:
        table[pair] = _incident(row.body)
    else:
        table[pair] = int(json.loads(row.body))


def log_key(version: int) -> str:
    """The key of a version's entry in the rule-state log (ordered as text)."""
    return f"{version:016d}"


def log_row(version: int, rows: Sequence[StateRow]) -> StateRow:
    """The log entry of `version`: the rule-state rows its commit wrote."""
    return StateRow(LOG, log_key(version), json.dumps([[row.namespace, row.key, row.body] for row in rows]))


def logged_rows(body: str) -> list[StateRow]:
    """The rows a log entry records."""
    return [StateRow(str(namespace), str(key), body) for namespace, key, body in json.loads(body)]
