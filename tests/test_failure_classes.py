"""Infra or agent: the failure-class table and its config, the class on scenario events and in the summary, and
`job.infra_degraded` — on the simulator's jobs, polled through the real client into a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from notifiers.console import text_lines
from notifiers.discord import embed
from notifiers.email_render import render_html, render_text
from notifiers.pagerduty import custom_details
from notifiers.slack_blocks import message_blocks
from notifiers.teams import card
from notifiers.webhook import notification_json
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.poll import fetch_snapshot
from watcher.app.config import load_config
from watcher.core.clock import ManualClock
from watcher.core.eventlines import event_line
from watcher.core.events import Counters, Event, JobInfraDegraded, ScenarioFailed, ScenarioFields
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES, FailureClasses, FailureCounts
from watcher.core.models import BenchmarkJobView
from watcher.core.snapshot import Snapshot
from watcher.core.summary import FailureGroup
from watcher.diff.jobs import diff
from watcher.diff.summary import summarize
from watcher.pipeline.sample import sample_notification
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.store.sqlite import SQLiteStore


def test_the_built_in_table_decides_in_the_documented_order() -> None:
    classify = DEFAULT_FAILURE_CLASSES.classify
    assert classify("FAILED", None, "NonZeroAgentExitCodeError") == "setup"  # no scenario run: the agent never ran
    assert classify("TIMEOUT", None, None) == "setup"
    assert classify("FAILED", "scr_1", "DevboxSetupError") == "setup"
    assert classify("FAILED", "scr_1", "EnvironmentStartTimeoutError") == "setup"
    assert classify("FAILED", "scr_1", "AgentSetupTimeoutError") == "setup"
    assert classify("FAILED", "scr_1", "AgentTimeoutError") == "timeout"  # the type wins over the state
    assert classify("TIMEOUT", "scr_1", None) == "timeout"
    assert classify("TIMEOUT", "scr_1", "SomethingNew") == "timeout"
    assert classify("FAILED", "scr_1", "NonZeroAgentExitCodeError") == "agent"
    assert classify("FAILED", "scr_1", "SomethingNew") == "agent"  # unknown types are the agent's
    assert classify("FAILED", "scr_1", None) == "agent"
    assert classify("CANCELED", None, None) == "agent"  # never started because the job stopped: not a setup failure
    assert classify("CANCELED", "scr_1", "DevboxSetupError") == "setup"
    assert classify("COMPLETED", "scr_1", None) is None
    assert FailureCounts(setup=3, agent=5).text() == "3 setup, 5 agent"
    assert FailureCounts().text() == ""


def test_the_config_adds_types_and_moves_built_in_ones(tmp_path: Path) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "watch: {jobs: [bmj_1], infra_alert_ratio: 0.5}\n"
        "failure_classes:\n  setup: [MyEnvError, RateLimitError]\n  agent: [AgentSetupTimeoutError]\n"
    )
    loaded = load_config(config, {})
    table = loaded.config.failure_classes.table()
    assert table.classify("FAILED", "scr_1", "MyEnvError") == "setup"
    assert table.classify("FAILED", "scr_1", "RateLimitError") == "setup"  # moved from agent
    assert table.classify("FAILED", "scr_1", "AgentSetupTimeoutError") == "agent"  # moved from setup
    assert table.classify("FAILED", "scr_1", "DevboxSetupError") == "setup"  # the rest of the table stays
    assert loaded.config.watch.infra_alert_ratio == 0.5
    config.write_text("watch: {jobs: [bmj_1]}\n")
    assert load_config(config, {}).config.watch.infra_alert_ratio == 0.2


# -- on the simulator ------------------------------------------------------------------------------------------------

SCENARIOS = [f"scn_{i:02d}" for i in range(10)]
# "fragile" loses 4 of its 10 scenarios in setup — 3 with no scenario run, 1 with a type the config calls setup — and
# finishes first; "steady" runs longer (a timeout) and loses one in setup.
FRAGILE: dict[str, Any] = dict.fromkeys(SCENARIOS, 1.0) | {
    "scn_00": "setup",
    "scn_01": "setup",
    "scn_02": "setup:EnvironmentStartTimeoutError",
    "scn_03": "failed:MyEnvError",
    "scn_04": "failed",
}
STEADY: dict[str, Any] = dict.fromkeys(SCENARIOS, 1.0) | {
    "scn_05": "timeout",
    "scn_06": "failed:RateLimitError",
    "scn_07": "setup",
}
MY_CLASSES = FailureClasses.extended({"setup": ["MyEnvError"]})


def _spec() -> SimJobSpec:
    return SimJobSpec(
        name="infra-night",
        scenario_ids=SCENARIOS,
        concurrency=10,
        scenario_duration_s=(60.0, 120.0),
        scenario_timeout_s=1800.0,
        agents=[SimAgent(name="fragile", results=FRAGILE), SimAgent(name="steady", results=STEADY)],
    )


async def _poll_to_rest(
    tracker: JobTracker, client: RunloopClient, clock: ManualClock, job_id: str, *, scenario_runs: bool
) -> tuple[list[Event], BenchmarkJobView]:
    seen: list[Event] = []
    for _ in range(200):
        snapshot = await fetch_snapshot(client, job_id, clock, scenario_runs=scenario_runs)
        observation = await tracker.observe(snapshot)
        seen.extend(observation.events)
        if observation.memory is not None and observation.memory.resting:
            return seen, snapshot.job
        clock.advance(30_000)
    raise AssertionError("the job never came to rest")


def _client(url: str, clock: ManualClock) -> RunloopClient:
    return RunloopClient(base_url=url, api_key="k", clock=clock, limits=RequestLimits(max_per_s=None))


def _classes(events: list[Event]) -> dict[tuple[str | None, str], str | None]:
    return {
        (e.agent_name, e.scenario_definition_id): e.failure_class
        for e in events
        if isinstance(e, ScenarioFields) and e.kind != "scenario.recovered"
    }


async def test_outcomes_classify_each_failure_and_the_setup_share_is_told_once(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec())
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        tracker = JobTracker(store, failure_classes=MY_CLASSES, infra_alert_ratio=0.2)
        events, job = await _poll_to_rest(tracker, client, clock, plan.job_id, scenario_runs=False)
    assert _classes(events) == {
        ("fragile", "scn_00"): "setup",
        ("fragile", "scn_01"): "setup",
        ("fragile", "scn_02"): "setup",
        ("fragile", "scn_03"): "setup",  # MyEnvError, as the config says
        ("fragile", "scn_04"): "agent",  # NonZeroAgentExitCodeError
        ("steady", "scn_05"): "timeout",
        ("steady", "scn_06"): "agent",  # RateLimitError: the agent's, by the built-in table
        ("steady", "scn_07"): "setup",
    }
    (degraded,) = [e for e in events if isinstance(e, JobInfraDegraded)]
    # told when fragile's outcome landed: 4 of its 10 (40 % > 20 %); steady's outcome later brings it to 5 of 20,
    # still over — but it was told already
    assert (degraded.n_setup, degraded.n_done, degraded.setup_ratio) == (4, 10, 0.4)
    assert [(t.exception_type, t.count) for t in degraded.exception_types] == [
        ("DevboxSetupError", 2),
        ("EnvironmentStartTimeoutError", 1),
        ("MyEnvError", 1),
    ]
    assert event_line(degraded) == (
        "infra-night: infra degraded: 4 of 10 finished scenarios failed in setup (40% > 20%): DevboxSetupError ×2, "
        "EnvironmentStartTimeoutError ×1, MyEnvError ×1"
    )
    failed = next(e for e in events if isinstance(e, ScenarioFailed) and e.scenario_definition_id == "scn_00")
    assert event_line(failed) == "infra-night: failed in setup: fix-broken-makefile-000 (fragile) — DevboxSetupError"
    summary = summarize(job, _counters(job), {}, "https://platform.x", classes=MY_CLASSES)
    assert summary.failures_by_class == FailureCounts(setup=5, timeout=1, agent=2)
    assert {(g.exception_type, g.failure_class) for g in summary.failures} >= {
        ("MyEnvError", "setup"),
        ("RateLimitError", "agent"),
        ("AgentTimeoutError", "timeout"),
    }
    default = summarize(job, _counters(job), {}, "https://platform.x")  # without the config: MyEnvError is agent's
    assert default.failures_by_class == FailureCounts(setup=4, timeout=1, agent=3)


async def test_a_followed_run_classifies_from_what_its_scenario_runs_say(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec())
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        tracker = JobTracker(store, failure_classes=MY_CLASSES, infra_alert_ratio=None)
        events, _ = await _poll_to_rest(tracker, client, clock, plan.job_id, scenario_runs=True)
    classes = _classes(events)
    # the setup failures had no scenario run to follow: seen in the outcome, with no run id — setup all the same
    assert [classes[("fragile", s)] for s in ("scn_00", "scn_01", "scn_02")] == ["setup"] * 3
    # MyEnvError was followed in a scenario run, which names no exception type: the event cannot know it (the
    # summary, from the outcome, counts it as setup)
    assert classes[("fragile", "scn_03")] == "agent"
    assert not any(isinstance(e, JobInfraDegraded) for e in events)  # infra_alert_ratio: null


async def test_a_job_first_seen_finished_tells_no_infra_alert(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(), create_ms=clock.now_ms() - 86_400_000)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        events, _ = await _poll_to_rest(JobTracker(store), client, clock, plan.job_id, scenario_runs=False)
    assert [e.kind for e in events] == ["job.discovered"]


def _counters(job: BenchmarkJobView) -> Counters:
    return diff(None, Snapshot(job=job, at_ms=0)).memory.counters


async def test_under_the_limit_nothing_is_told(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec())
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        tracker = JobTracker(store, failure_classes=MY_CLASSES, infra_alert_ratio=0.5)
        events, _ = await _poll_to_rest(tracker, client, clock, plan.job_id, scenario_runs=False)
    assert not any(isinstance(e, JobInfraDegraded) for e in events)  # 40 % is not over 50 %


# -- every notifier shows the classes --------------------------------------------------------------------------------


def test_every_notifier_shows_the_failures_by_class() -> None:
    base = sample_notification("any", 1_788_228_000_000)
    assert base.summary is not None
    group = FailureGroup(exception_type="DevboxSetupError", failure_class="setup", count=3, examples=())
    summary = base.summary.model_copy(
        update={"failures": (group,), "failures_by_class": FailureCounts(setup=3, agent=5)}
    )
    notification = base.model_copy(update={"summary": summary})
    slack = json.dumps(message_blocks(notification), ensure_ascii=False)
    assert "*Failures* by exception type (1): 3 setup, 5 agent" in slack
    assert "*DevboxSetupError* × 3 (setup)" in slack
    assert "Failures by type: 3 setup, 5 agent\nDevboxSetupError (3, setup)" in render_text(notification)
    assert "Failures by type: 3 setup, 5 agent</h3>" in render_html(notification)
    details = custom_details(notification)
    assert details["failures_by_class"] == {"setup": 3, "timeout": 0, "agent": 5}
    assert details["top_failures"][0]["failure_class"] == "setup"
    assert "3 setup, 5 agent" in json.dumps(card(notification))
    assert embed(notification)["footer"]["text"].endswith("· failures: 3 setup, 5 agent")
    assert text_lines("console", notification)[-1] == "    failures: 3 setup, 5 agent"
    assert notification_json(notification)["summary"]["failures_by_class"] == {"setup": 3, "timeout": 0, "agent": 5}
