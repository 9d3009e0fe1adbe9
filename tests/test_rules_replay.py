"""Dry runs: the example configs replayed over simulated lives, and rule state surviving a restart."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.recording import record, to_snapshot, write_lines
from watcher.app.config import load_config
from watcher.cli.replay import replay
from watcher.core.clock import ManualClock
from watcher.core.snapshot import Snapshot
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.store.sqlite import SQLiteStore

EXAMPLES = Path(__file__).parent.parent / "examples"
ENV = {"RUNLOOP_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-test", "RESULTS_WEBHOOK_SECRET": "whsec_dGVzdA=="}
WEAK = [SimAgent(name="weak-agent", model_name="tiny", pass_rate=0.1)]
STRONG = [SimAgent(name="strong-agent", model_name="big", pass_rate=0.95)]


def _recording(tmp_path: Path, specs: list[SimJobSpec], hours: int = 3) -> Path:
    clock = ManualClock()
    sim = Simulator(seed=21, clock=clock)
    plans = [sim.add_job(spec) for spec in specs]
    return write_lines(tmp_path / "recording.jsonl", record(sim, clock, plans, steps=hours * 60, step_ms=60_000))


async def _dry_run(example: str, recording: Path) -> list[dict[str, Any]]:
    out = io.StringIO()
    await replay(recording, out, config=load_config(EXAMPLES / example, ENV))
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.slow
async def test_slack_on_completion(tmp_path: Path) -> None:
    recording = _recording(
        tmp_path,
        [
            SimJobSpec(name="nightly-2026-11-27", agents=WEAK + STRONG, n_scenarios=10, fail_rate=0.0, timeout_rate=0),
            SimJobSpec(name="weekly-2026-w48", n_scenarios=5),
        ],
    )
    notes = await _dry_run("slack-on-completion.yaml", recording)
    assert Counter(n["rule"] for n in notes) == {"nightly-finished": 1, "nightly-score-drop": 1}
    finished = next(n for n in notes if n["rule"] == "nightly-finished")
    assert finished["notifier"] == "research-slack" and finished["events"][0]["job_name"] == "nightly-2026-11-27"
    assert "weak-agent" in finished["title"] and "strong-agent" in finished["title"]  # the scores, in the title
    drop = next(n for n in notes if n["rule"] == "nightly-score-drop")
    assert drop["severity"] == "warning" and drop["events"][0]["agent_name"] == "weak-agent"


@pytest.mark.slow
async def test_webhook_integration_batches_failures_per_job(tmp_path: Path) -> None:
    recording = _recording(tmp_path, [SimJobSpec(name="batch", agents=WEAK, n_scenarios=30, fail_rate=0.4)])
    notes = await _dry_run("webhook-integration.yaml", recording)
    results = [event["kind"] for n in notes if n["rule"] == "results" for event in n["events"]]
    assert sorted(results) == ["job.finished", "run.finished"]
    failures = [n for n in notes if n["rule"] == "failures"]
    told = [event for n in failures for event in n["events"]]
    assert told and all(e["kind"] in ("scenario.failed", "scenario.timed_out") for e in told)
    assert len(failures) < len(told)  # batched, not one message per failure
    assert len({e["id"] for e in told}) == len(told)  # and nothing twice
    for n in failures:
        window = n["created_ms"] - n["events"][0]["at_ms"]
        assert window == 120_000 and all(e["at_ms"] <= n["created_ms"] for e in n["events"])


@pytest.mark.slow
async def test_pagerduty_pages_on_failure_and_resolves_when_it_recovers(tmp_path: Path) -> None:
    recording = _recording(
        tmp_path,
        [
            SimJobSpec(name="broken", outcome="failed", end_after_s=600, agents=STRONG),
            SimJobSpec(name="bursty", agents=WEAK, n_scenarios=20, fail_rate=0.6, concurrency=10),
        ],
    )
    notes = await _dry_run("pagerduty-on-failure.yaml", recording)
    assert [(n["rule"], n["action"]) for n in notes if n["events"][0]["job_name"] == "broken"] == [
        ("job-failed", "trigger")
    ]
    bursty = [(n["rule"], n["action"], n["dedup_key"]) for n in notes if n["events"][0]["job_name"] == "bursty"]
    assert bursty[0][:2] == ("failure-burst", "trigger") and bursty[-1][:2] == ("burst-over", "resolve")
    assert bursty[0][2] == bursty[-1][2] and bursty[0][2].startswith("burst:bmj_")


@pytest.mark.slow
def test_replay_with_a_config_on_the_command_line(tmp_path: Path) -> None:
    recording = _recording(tmp_path, [SimJobSpec(name="nightly-x", agents=WEAK, n_scenarios=10)], hours=2)
    command = [
        sys.executable,
        "-m",
        "watcher",
        "replay",
        str(recording),
        "--config",
        str(EXAMPLES / "slack-on-completion.yaml"),
    ]
    env = {"PATH": "/usr/bin:/bin", **ENV}
    first = subprocess.run(command, capture_output=True, env=env, check=True)
    second = subprocess.run(command, capture_output=True, env=env, check=True)
    assert first.stdout == second.stdout and first.stdout.count(b"\n") == 2


@pytest.mark.slow
async def test_group_windows_and_repeat_timers_survive_a_restart(tmp_path: Path) -> None:
    config_path = tmp_path / "benchwatch.yaml"
    config_path.write_text(
        "notifiers: {out: {type: console}}\n"
        "rules:\n  - {name: burst, on: 'scenario.*', notify: out, group_wait: 10m, repeat_interval: 1h}\n"
    )
    config = load_config(config_path, {}).config
    from rules.engine import Router

    clock = ManualClock()
    sim = Simulator(seed=3, clock=clock)
    plan = sim.add_job(SimJobSpec(name="j", n_scenarios=30, fail_rate=0.5, agents=WEAK, concurrency=10))
    lines = record(sim, clock, [plan], steps=240, step_ms=30_000)
    snapshots = [to_snapshot(line) for line in lines]

    async def run(store_path: Path, parts: list[list[Snapshot]]) -> list[Any]:
        sent = []
        for part in parts:  # each part is one process lifetime
            async with SQLiteStore(store_path) as store:
                tracker = JobTracker(store, router=Router(config.rules))
                for snapshot in part:
                    sent.extend((await tracker.flush_due(snapshot.at_ms)).notifications)
                    sent.extend((await tracker.observe(snapshot)).notifications)
        return [(n.created_ms, [e.id for e in n.events]) for n in sent]

    whole = await run(tmp_path / "whole.db", [snapshots])
    restarted = await run(tmp_path / "restarted.db", [snapshots[:37], snapshots[37:90], snapshots[90:]])
    assert whole == restarted and len(whole) >= 2
