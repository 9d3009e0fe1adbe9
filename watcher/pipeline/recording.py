"""Snapshots as replay lines: what `benchwatch record` and `benchwatch run --record` write for `replay` to read.

One JSON object per line, `{"at_ms", "job", "scenario_runs"}` (docs/events.md, "Recording snapshots"): the time the
snapshot was observed, the job view as the API sent it (unknown fields kept), and the scenario runs of the runs
followed at that poll. Each line is flushed as written, so a recording cut short by a crash holds every whole line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, TextIO

import msgspec

from watcher.core.snapshot import Snapshot


def snapshot_line(snapshot: Snapshot) -> str:
    """The replay line of a snapshot (no newline)."""
    line: dict[str, Any] = {
        "at_ms": snapshot.at_ms,
        "job": snapshot.job.model_dump(mode="json", exclude_none=True),
        "scenario_runs": {
            run_id: [msgspec.to_builtins(status) for status in runs.listed]
            for run_id, runs in sorted(snapshot.scenario_runs.items())
        },
    }
    return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class SnapshotRecorder:
    """Appends snapshots to a replay file, skipping one identical (but for its time) to the job's previous line."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.written = 0
        self._previous: dict[str, str] = {}

    def write(self, snapshot: Snapshot) -> bool:
        """Write the snapshot's line; False when nothing changed since the job's last line."""
        line = snapshot_line(snapshot)
        content = line[line.index(',"job":') :]  # all but the time
        if self._previous.get(snapshot.job.id) == content:
            return False
        self._previous[snapshot.job.id] = content
        self.file.write(line + "\n")
        self.file.flush()
        self.written += 1
        return True


def recording_path(folder: Path, now_s: float | None = None) -> Path:
    """A new file in `folder` for one run of the service: `snapshots-20261130T221500Z.jsonl`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now_s is None else now_s))
    return folder / f"snapshots-{stamp}.jsonl"
