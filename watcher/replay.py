"""`benchwatch replay`: recorded snapshots (JSON lines) in, events (JSON lines) out — the same way every time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from watcher.events import event_to_json
from watcher.models import BenchmarkJobView, ScenarioRunView
from watcher.snapshot import Snapshot
from watcher.store import SQLiteStore
from watcher.tracker import JobTracker


class ReplayInputError(ValueError):
    """A line of the replay file is not a snapshot; the message names the file and line."""


class _Line(BaseModel):
    """`{"at_ms": ..., "job": {...}, "scenario_runs": {...}}`."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int | None = None
    job: BenchmarkJobView
    scenario_runs: dict[str, tuple[ScenarioRunView, ...]] | None = None


def read_snapshots(path: Path) -> list[Snapshot]:
    """Every snapshot in the file, in file order; blank lines are skipped. Raises `ReplayInputError`."""
    snapshots = []
    with path.open("rb") as lines:
        for number, raw in enumerate(lines, start=1):
            if raw.strip():
                snapshots.append(_parse_line(path, number, raw))
    return snapshots


def _parse_line(path: Path, number: int, raw: bytes) -> Snapshot:
    try:
        value: Any = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReplayInputError(f"{path}:{number}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ReplayInputError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}")
    try:
        if "job" in value and "id" not in value:
            line = _Line.model_validate(value)
            at_ms = number if line.at_ms is None else line.at_ms
            return Snapshot(job=line.job, at_ms=at_ms, scenario_runs=line.scenario_runs or {})
        return Snapshot(job=BenchmarkJobView.model_validate(value), at_ms=number)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"]) or "line"
        raise ReplayInputError(f"{path}:{number}: {where}: {error['msg']}") from None


async def replay(path: Path, out: TextIO, *, state: Path | None = None) -> int:
    """Diff every snapshot of `path` in order and write the events as JSON lines; returns how many."""
    snapshots = read_snapshots(path)
    count = 0
    async with SQLiteStore(state if state is not None else ":memory:") as store:
        tracker = JobTracker(store)
        for snapshot in snapshots:
            for event in await tracker.observe(snapshot):
                out.write(event_to_json(event) + "\n")
                count += 1
    return count
