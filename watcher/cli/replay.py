"""`benchwatch replay`: recorded snapshots (JSON lines) in, events (JSON lines) out — the same way every time."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict, ValidationError

from rules.engine import Router
from watcher.app.config import LoadedConfig, load_config
from watcher.cli.errors import UsageError
from watcher.cli.state import given_state
from watcher.core.decisions import Decision
from watcher.core.events import Event
from watcher.core.models import BenchmarkJobView, ScenarioRunView
from watcher.core.scenario_runs import from_views
from watcher.core.snapshot import Snapshot
from watcher.diff.summary import dashboard_url_for
from watcher.pipeline.comparer import job_comparer
from watcher.pipeline.explain import Explanation, explained_events, explanation_json, explanation_text
from watcher.pipeline.tracker import JobTracker, Observation
from watcher.store import open_store
from watcher.store.protocol import Store


class ReplayInputError(ValueError):
    """The replay file cannot be read, or a line of it is not a snapshot; the message names the file (and line)."""


class _Line(BaseModel):
    """`{"at_ms": ..., "job": {...}, "scenario_runs": {...}}`."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int | None = None
    job: BenchmarkJobView
    scenario_runs: dict[str, tuple[ScenarioRunView, ...]] | None = None


def read_snapshots(path: Path) -> list[Snapshot]:
    """Every snapshot in the file, in file order. Raises `ReplayInputError` naming the file and line.

    The file holds JSON objects one after another: JSON lines (what `benchwatch record`, `run --record` and `job`
    write), or objects spread over several lines (`benchwatch job --pretty`, a view saved from elsewhere).
    """
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ReplayInputError(f"{path}: {exc.strerror or exc}") from None
    decoder = json.JSONDecoder()
    snapshots: list[Snapshot] = []
    position = _skip_space(text, 0)
    while position < len(text):
        number = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            raise ReplayInputError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
        previous_ms = snapshots[-1].at_ms if snapshots else None
        snapshots.append(snapshot_from(value, f"{path}:{number}", previous_ms))
        position = _skip_space(text, position)
    return snapshots


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def snapshot_from(value: Any, where: str, previous_ms: int | None) -> Snapshot:
    """One snapshot from a parsed object: a replay line or a bare job view (`where` names it in errors, as
    `FILE:LINE`). Raises `ReplayInputError`."""
    if not isinstance(value, dict):
        raise ReplayInputError(f"{where}: expected a JSON object, got {type(value).__name__}")
    try:
        if "job" in value and "id" not in value:
            line = _Line.model_validate(value)
            at_ms = line.at_ms if line.at_ms is not None else seen_at_ms(line.job, previous_ms)
            return Snapshot(job=line.job, at_ms=at_ms, scenario_runs=from_views(line.scenario_runs or {}))
        job = BenchmarkJobView.model_validate(value)
        return Snapshot(job=job, at_ms=seen_at_ms(job, previous_ms))
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in error["loc"]) or "line"
        raise ReplayInputError(f"{where}: {field}: {error['msg']}") from None


def seen_at_ms(job: BenchmarkJobView, previous_ms: int | None) -> int:
    """When a job view without `at_ms` was seen, at the earliest: the latest time it mentions itself (its creation,
    the end of its runs so far) — a real time, the same for the same view — and never before the snapshot before."""
    mentioned = [job.create_time_ms]
    for run in job.in_progress_runs or ():
        if run.start_time_ms is not None:
            mentioned.append(run.start_time_ms + (run.duration_ms or 0))
    latest = max(mentioned)
    return latest if previous_ms is None else max(latest, previous_ms)


@dataclass(frozen=True)
class Step:
    """One moment of a replay: a snapshot observed, or group windows closing at their own time."""

    at_ms: int
    observation: Observation


async def replay_steps(
    tracker: JobTracker, snapshots: Sequence[Snapshot], *, until_ms: int | None = None
) -> AsyncIterator[Step]:
    """Drive the tracker over the snapshots on their own clock, as a running watcher would live them: windows
    that close between two snapshots close at their time (the service's timer), before the next snapshot is
    observed; those still open at the end close at their own time — or, with `until_ms`, the clock stops there:
    later snapshots are not seen, and windows open then stay open."""
    for snapshot in snapshots:
        if until_ms is not None and snapshot.at_ms > until_ms:
            break
        async for step in _windows_closing(tracker, before_ms=snapshot.at_ms):
            yield step
        yield Step(snapshot.at_ms, await tracker.observe(snapshot))
    end_ms = None if until_ms is None else until_ms + 1
    async for step in _windows_closing(tracker, before_ms=end_ms):
        yield step


async def _windows_closing(tracker: JobTracker, *, before_ms: int | None) -> AsyncIterator[Step]:
    while (due_ms := tracker.next_due_ms()) is not None and (before_ms is None or due_ms < before_ms):
        yield Step(due_ms, await tracker.flush_due(due_ms))


async def replay(
    path: Path,
    out: TextIO,
    *,
    state: str | Path | None = None,
    config: LoadedConfig | None = None,
    notes: TextIO | None = None,
) -> int:
    """Diff every snapshot of `path` in order and write JSON lines: the events, or with a config the
    notifications that would be sent (nothing is sent), windows closing on the replay's clock. Returns how many.

    With a config, `notes` (if given) receives a line for each notification not sent: muted by a time interval,
    inhibited, or already sent once (`once_per`)."""
    snapshots = read_snapshots(path)
    count = 0
    async with open_store(state if state is not None else ":memory:") as store:
        async for step in replay_steps(tracker_for(store, config), snapshots):
            observation = step.observation
            lines = observation.events if config is None else observation.notifications
            for item in lines:
                out.write(item.model_dump_json() + "\n")
                count += 1
            _note(notes, step.at_ms, observation.dropped)
    return count


async def replay_explained(
    path: Path, config: LoadedConfig, *, state: str | Path | None = None, notes: TextIO | None = None
) -> list[Explanation]:
    """A dry run's decisions: for each event of `path` (in order), what each rule of `config` decided, and why."""
    snapshots = read_snapshots(path)
    events: list[Event] = []
    decisions: list[Decision] = []
    async with open_store(state if state is not None else ":memory:") as store:
        async for step in replay_steps(tracker_for(store, config), snapshots):
            events.extend(step.observation.events)
            decisions.extend(step.observation.decisions)
            _note(notes, step.at_ms, step.observation.dropped)
    return explained_events(events, decisions)


def _note(notes: TextIO | None, at_ms: int, dropped: tuple[str, ...]) -> None:
    if notes is not None:
        for line in dropped:
            notes.write(f"at_ms {at_ms}: not sent: {line}\n")


def tracker_for(store: Store, config: LoadedConfig | None) -> JobTracker:
    """The tracker a dry run drives: with a config, its rules (and the file's silences) route what it sees."""
    if config is None:
        return JobTracker(store)
    router = Router(
        config.config.rules,
        config.config.silences,
        inhibit=config.config.inhibit,
        time_intervals=config.config.time_intervals,
    )
    dashboard_url = dashboard_url_for(config.config.runloop.resolved_base_url({}))
    # A dry run asks no API: baselines come from jobs replayed before (and kept in --state).
    classes = config.config.failure_classes.table()
    comparer = job_comparer(config.config.baseline, store, None, dashboard_url, classes)
    return JobTracker(
        store,
        router=router,
        dashboard_url=dashboard_url,
        comparer=comparer,
        failure_classes=classes,
        infra_alert_ratio=config.config.watch.infra_alert_ratio,
    )


async def replay_command(args: argparse.Namespace) -> int:
    """`benchwatch replay FILE`: events of recorded snapshots, as JSON lines on stdout."""
    config = load_config(args.config) if args.config is not None else None
    if not args.explain:
        if args.json:
            raise UsageError("--json goes with --explain (replay's output is JSON lines already)")
        try:
            await replay(args.file, sys.stdout, state=given_state(args), config=config, notes=sys.stderr)
        except ReplayInputError as exc:
            raise UsageError(str(exc)) from None
        return 0
    if config is None:
        raise UsageError("--explain needs --config: the decisions are those of a config's rules")
    try:
        explained = await replay_explained(args.file, config, state=given_state(args), notes=sys.stderr)
    except ReplayInputError as exc:
        raise UsageError(str(exc)) from None
    for one in explained:
        if args.json:
            print(json.dumps(explanation_json(one)))
        else:
            print("\n".join(explanation_text(one)))
    return 0
