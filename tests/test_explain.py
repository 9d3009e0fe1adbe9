"""`benchwatch explain` on what a running watcher really decided (the real Service, the simulator, a webhook, an
SQLite file), and `benchwatch replay --explain` on a recording: each rule's decision for an event, and why."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.example_recordings import RECORDINGS
from tests.running import Running, running_service
from watcher.cli.main import main
from watcher.core.clock import ManualClock
from watcher.core.events import Event
from watcher.pipeline.silences import add_silence, request_from_args
from watcher.simulator import SimAgent, SimJobSpec, Simulator

FLAKY = [SimAgent(name="flaky-agent", model_name="small", pass_rate=0.5)]
RULES = """\
rules:
  - {name: job-failed, on: job.finished, where: {state: failed}, notify: hook, severity: critical}
  - {name: failures, on: [scenario.failed, scenario.timed_out], notify: hook, group_wait: 10m}
  - {name: finished, on: job.finished, where: {job_name: "nightly-*"}, notify: hook}
inhibit:
  - {name: failed-job-quiets, source: {rule: job-failed}, target: {kind: "scenario.*"}, equal: [job_id], for: 6h}
"""
EXAMPLES = Path(__file__).parent.parent / "examples"
DOC = Path(__file__).parent.parent / "docs" / "rules.md"
ENV = {"RUNLOOP_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-test"}


pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]  # a real service: `make test-fast` skips it


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lived(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """A watcher that lived half an hour: `nightly-a` failed after its scenarios did, `quiet-b` was silenced,
    `nightly-c` completed with failures."""
    clock = ManualClock()
    sim = Simulator(seed=7, clock=clock)
    sim.add_job(SimJobSpec(name="nightly-a", agents=FLAKY, n_scenarios=12, concurrency=4, fail_rate=0.4,
                           scenario_duration_s=(60, 240), outcome="failed", end_after_s=600))  # fmt: skip
    sim.add_job(SimJobSpec(name="quiet-b", agents=FLAKY, n_scenarios=4, concurrency=4, fail_rate=0.5,
                           scenario_duration_s=(60, 120)))  # fmt: skip
    sim.add_job(SimJobSpec(name="nightly-c", agents=FLAKY, n_scenarios=4, concurrency=4, fail_rate=0.5,
                           scenario_duration_s=(60, 120)))  # fmt: skip
    async with running_service(tmp_path_factory.mktemp("lived"), sim, clock, rules=RULES) as running:
        request = request_from_args(["job_name=quiet-*"], now_ms=clock.now_ms(), for_="1d", until=None,
                                    comment="runner upgrade", created_by="alice")  # fmt: skip
        await add_silence(running.service.store, request, clock.now_ms())
        await running.service.tracker.refresh_silences()
        for _ in range(30):
            await running.poll(advance_ms=60_000)
            await running.service.flush_timers()
        await running.service.drain()
        yield running


async def _events(running: Running, kind: str, job_name: str) -> list[Event]:
    stored = await running.service.store.events(kind=kind, limit=1000)
    return [item.event for item in stored if item.event.job_name == job_name]


async def _explain(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> tuple[int, str, str]:
    """The command as a user runs it (its own event loop, in a thread: this test's loop runs the watcher)."""
    code = await asyncio.to_thread(main, ["explain", *args, "--config", str(config)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_explain_tells_what_was_sent_inhibited_and_silenced_as_it_happened(
    lived: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    (finished,) = await _events(lived, "job.finished", "nightly-a")
    code, out, _ = await _explain(capsys, lived.config, finished.id)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{finished.id} job.finished at ") and "nightly-a: finished" in lines[0]
    sent = next(line for line in lines if line.startswith("  job-failed: sent to hook (nt_"))
    assert sent.endswith("; hook: sent after 1 attempt")
    assert any(line.startswith("  finished: sent to hook (nt_") for line in lines)
    assert lines[-1] == "  not listening for job.finished (on:): failures"

    inhibited = (await _events(lived, "scenario.failed", "nightly-a"))[-1]
    code, out, _ = await _explain(capsys, lived.config, inhibited.id[:10])  # a unique prefix will do
    assert code == 0
    assert "    " in out and "matched; held in its group window until" in out
    assert "inhibited by 'failed-job-quiets': its source was sent " in out
    assert " (in force until " in out  # its `for: 6h`: nothing resolves job-failed's incidents

    silenced = (await _events(lived, "scenario.failed", "quiet-b"))[0]
    code, out, _ = await _explain(capsys, lived.config, silenced.id, "--json")
    [explained] = json.loads(out)
    decisions = {rule["rule"]: rule["decisions"] for rule in explained["rules"]}
    (failures,) = decisions["failures"]
    assert failures["verdict"] == "silenced" and failures["by"].startswith("sil_")
    assert failures["note"] == "alice: runner upgrade" and failures["until_ms"] > silenced.at_ms
    assert failures["text"].startswith(f"matched, but silenced by {failures['by']} until ")


async def test_explain_reads_what_was_recorded_not_todays_config(
    lived: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    inhibited = (await _events(lived, "scenario.failed", "nightly-a"))[-1]
    before = await _explain(capsys, lived.config, inhibited.id)
    text = lived.config.read_text()
    lived.config.write_text(text.split("inhibit:")[0].replace("group_wait: 10m", ""))
    try:
        assert await _explain(capsys, lived.config, inhibited.id) == before
    finally:
        lived.config.write_text(text)


async def test_explain_a_notification_explains_each_of_its_events(
    lived: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = await lived.service.store.outbox_items(status="sent")
    digest = next(item.notification for item in sent if item.notification.rule == "failures")
    code, out, _ = await _explain(capsys, lived.config, digest.id)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines() if line.startswith("ev_")] == [e.id for e in digest.events]
    assert out.count(f"sent to hook ({digest.id}); hook: sent after 1 attempt") == len(digest.events)


async def test_an_unknown_id_is_one_line_and_exit_2(lived: Running, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = await _explain(capsys, lived.config, "ev_nothing_like_it")
    assert (code, out) == (2, "")
    assert (
        err
        == "benchwatch: error: no event or notification 'ev_nothing_like_it' in "
        + str(lived.config.parent / "state.db")
        + " (or the prefix is ambiguous)\n"
    )


async def test_replay_explain_says_why_the_failed_jobs_scenarios_were_not_sent(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    args = [
        "replay",
        str(RECORDINGS / "job-failure.jsonl"),
        "--config",
        str(EXAMPLES / "inhibit-during-job-failure.yaml"),
    ]
    assert await asyncio.to_thread(main, [*args, "--explain"]) == 0
    text = capsys.readouterr().out
    shown = DOC.read_text().split("## Why wasn't I notified?")[1].split("```text\n")[1].split("```")[0]
    assert shown in text  # what docs/rules.md shows is what it prints
    assert "inhibited by 'failed-job-quiets-its-scenarios': its source was sent 2026-09-01 02:11:00Z while " in text
    assert await asyncio.to_thread(main, [*args, "--explain", "--json"]) == 0
    explained = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    verdicts = {
        (item["event"]["job_name"], rule["rule"], rule["decisions"][-1]["verdict"])
        for item in explained
        for rule in item["rules"]
        if item["event"]["kind"] == "scenario.failed"
    }
    assert ("nightly-a", "scenario-failures", "inhibited") in verdicts
    assert ("nightly-b", "scenario-failures", "sent") in verdicts
    assert await asyncio.to_thread(main, [*args[:2], "--explain"]) == 2  # the decisions are a config's
    assert "--explain needs --config" in capsys.readouterr().err
