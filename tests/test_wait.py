"""`benchwatch wait` against the simulator: every exit code, the three outputs, the JUnit file, transient faults.

Most tests run the wait in-process on a ManualClock moved by a fake sleep (no real waiting); a few run the real
`python -m watcher wait` process against a simulator on an accelerated clock served from this process.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from lxml import etree
from rich.console import Console

from tests import hostile
from tests.conftest import FakeSleep, ServerFactory
from watcher.api.client import RequestLimits, RetryPolicy, RunloopClient
from watcher.cli.errors import UsageError
from watcher.cli.main import build_parser, main
from watcher.cli.wait.defaults import EXIT_JOB_FAILED, EXIT_OK, EXIT_THRESHOLD_MISSED, EXIT_TIMEOUT, EXIT_UNKNOWN
from watcher.cli.wait.junit import VERDICT_SUITE, Verdict, junit_tree
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import (
    AgentProgress,
    Thresholds,
    WaitOptions,
    WaitProgress,
    WaitResult,
    WaitView,
    options_from_args,
)
from watcher.cli.wait.views import JsonView, PlainView, RichView, SummaryLine, live_table
from watcher.core.clock import ManualClock
from watcher.core.eventlines import event_line
from watcher.core.events import event_from_json
from watcher.core.models import BenchmarkJobView, BenchmarkOutcome, FailureReason, ScenarioOutcome, ScenarioState
from watcher.simulator import Faults, SimAgent, SimJobSpec, Simulator, create_app
from watcher.simulator.plan import SETUP_FAILURE_REASON

BENCHWATCH = [sys.executable, "-m", "watcher"]
SECOND = 1000
MINUTE = 60 * SECOND


def _spec(**fields: Any) -> SimJobSpec:
    """A small job that ends within minutes of simulated time: 2 agents × 6 scenarios, nothing failing."""
    base: dict[str, Any] = {
        "name": "ci-nightly",
        "n_scenarios": 6,
        "concurrency": 3,
        "scenario_duration_s": (60.0, 120.0),
        "fail_rate": 0.0,
        "timeout_rate": 0.0,
    }
    return SimJobSpec(**(base | fields))


def _client(url: str, sleep: FakeSleep, **kwargs: Any) -> RunloopClient:
    limits = RequestLimits(max_per_s=None)  # pacing is about real load; these tests move a manual clock
    return RunloopClient(base_url=url, api_key="k", sleep=sleep, clock=sleep.clock, limits=limits, **kwargs)


async def _wait(
    url: str, sleep: FakeSleep, view: WaitView, client_options: dict[str, Any] | None = None, **options: Any
) -> WaitResult:
    options.setdefault("interval_ms", 30 * SECOND)
    async with _client(url, sleep, **(client_options or {})) as client:
        return await run_wait(client, WaitOptions(**options), view, clock=sleep.clock, sleep=sleep)


def _json_view() -> tuple[JsonView, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    return JsonView(out, err), out, err


def _lines(out: io.StringIO) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every line parses; events come first, then exactly one summary line, the last."""
    parsed = [json.loads(line) for line in out.getvalue().splitlines()]
    summaries = [index for index, line in enumerate(parsed) if line.get("type") == "summary"]
    assert summaries == [len(parsed) - 1], parsed
    events = parsed[:-1]
    for raw in out.getvalue().splitlines()[:-1]:
        event_from_json(raw)  # each is a well-formed event
    return events, parsed[-1]


# -- exit codes -------------------------------------------------------------------------------------


async def test_a_completed_job_exits_0_with_events_then_one_summary(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(_spec())
    view, out, err = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id)
    assert result.exit_code == EXIT_OK, result.reason
    events, summary = _lines(out)
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "job.discovered" and kinds[-1] == "job.finished"
    assert kinds.count("run.finished") == 2
    assert summary["exit_code"] == 0 and summary["state"] == "completed" and summary["job_id"] == plan.job_id
    assert [agent["agent_name"] for agent in summary["agents"]] == ["claude-code", "codex"]
    assert summary["counts"]["n_done"] == summary["counts"]["n_expected"] == 12
    assert summary["failure_rate"] == 0.0 and summary["failures"] == []
    assert summary["thresholds"] == {"min_score": None, "max_failure_rate": None, "checked": True, "missed": []}
    assert err.getvalue() == ""
    assert fake_sleep.delays and set(fake_sleep.delays) == {30.0}


async def test_a_job_already_terminal_is_answered_at_once(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    plan = sim.add_job(_spec())
    clock.advance(60 * MINUTE)
    view, out, _ = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id)
    assert result.exit_code == EXIT_OK and fake_sleep.delays == []
    events, summary = _lines(out)
    assert [event["kind"] for event in events] == ["job.discovered"] and summary["state"] == "completed"


async def test_late_outcomes_are_waited_for(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    # The job reads completed while a run is still listed in progress without its outcome (the API's quirk).
    plan = sim.add_job(_spec(outcome_delay_s=40, run_linger_s=120, completion_delay_s=0))
    assert plan.end_ms is not None
    clock.set(plan.end_ms)
    early = sim.job_view(plan.job_id)
    assert early["state"] == "completed" and len(early["benchmark_outcomes"] or []) < 2
    view, out, _ = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, interval_ms=30 * SECOND)
    assert result.exit_code == EXIT_OK
    events, summary = _lines(out)
    assert len(summary["agents"]) == 2 and all(agent["finished"] for agent in summary["agents"])
    assert [event["kind"] for event in events].count("run.finished") == 2 - len(early["benchmark_outcomes"] or [])
    assert 0 < len(fake_sleep.delays) <= 3  # re-polled for the late outcomes, then done


@pytest.mark.parametrize("outcome", ["failed", "cancelled", "timeout"])
async def test_a_job_that_did_not_complete_exits_1(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, outcome: str
) -> None:
    plan = sim.add_job(_spec(outcome=outcome, end_after_s=150, scenario_duration_s=(60, 600)))
    view, out, _ = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, thresholds=Thresholds(min_score=0.0))
    assert result.exit_code == EXIT_JOB_FAILED and result.state == outcome
    _, summary = _lines(out)
    assert summary["exit_code"] == 1 and summary["state"] == outcome
    assert summary["thresholds"]["checked"] is False  # thresholds are judged on a completed job only
    if outcome == "failed":
        assert SETUP_FAILURE_REASON in result.reason and summary["failure_reason"] == SETUP_FAILURE_REASON


async def test_min_score_missed_exits_3(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    agents = [SimAgent(name="strong", pass_rate=1.0), SimAgent(name="weak", pass_rate=0.0)]
    plan = sim.add_job(_spec(agents=agents))
    view, out, _ = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, thresholds=Thresholds(min_score=0.9))
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    assert [(miss.threshold, miss.subject) for miss in result.misses] == [("min_score", "weak")]
    _, summary = _lines(out)
    assert summary["exit_code"] == 3 and summary["thresholds"]["missed"][0]["limit"] == 0.9
    assert "weak score" in summary["reason"]


async def test_an_agent_whose_every_scenario_failed_scores_0_and_misses_min_score(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(_spec(fail_rate=1.0))  # nothing completes: the API has no average score; benchwatch's is 0
    result = await _wait(
        sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id, thresholds=Thresholds(min_score=0.01)
    )
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    assert {miss.subject for miss in result.misses} == {"claude-code", "codex"}
    assert all(miss.value == 0.0 for miss in result.misses)


async def test_max_failure_rate_missed_exits_3_and_held_exits_0(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(_spec(n_scenarios=10, fail_rate=0.3, timeout_rate=0.1, scenario_timeout_s=200))
    missed = await _wait(
        sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id, thresholds=Thresholds(max_failure_rate=0.05)
    )
    assert missed.exit_code == EXIT_THRESHOLD_MISSED
    assert missed.summary is not None and missed.summary.failure_rate is not None
    assert missed.summary.failure_rate > 0.05
    assert [miss.threshold for miss in missed.misses] == ["max_failure_rate"]
    held = await _wait(
        sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id, thresholds=Thresholds(max_failure_rate=1.0)
    )
    assert held.exit_code == EXIT_OK and "every threshold held" in held.reason


async def test_a_job_found_by_name(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    sim.add_job(_spec(name="other"))
    plan = sim.add_job(_spec(name="release-candidate"))
    result = await _wait(sim_url, fake_sleep, _json_view()[0], name="release-candidate")
    assert result.exit_code == EXIT_OK and result.job_id == plan.job_id


async def test_not_found_exits_4(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    view, out, err = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id="bmj_missing")
    assert result.exit_code == EXIT_UNKNOWN and "not found" in result.reason
    _, summary = _lines(out)
    assert summary["exit_code"] == 4 and summary["state"] is None and summary["job_id"] == "bmj_missing"
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("benchwatch: error: ")

    view, out, err = _json_view()
    result = await _wait(sim_url, fake_sleep, view, name="no-such-job")
    assert result.exit_code == EXIT_UNKNOWN and result.reason == "no job named 'no-such-job'"
    assert _lines(out)[1]["job_name"] == "no-such-job"


async def test_an_auth_error_exits_4(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    sim.api_key = "the-right-key"
    plan = sim.add_job(_spec())
    result = await _wait(sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id)
    assert result.exit_code == EXIT_UNKNOWN and "RUNLOOP_API_KEY" in result.reason
    assert fake_sleep.delays == []  # an auth error is not retried, and does not heal by waiting


async def test_an_api_unreachable_beyond_give_up_after_exits_4(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    plan = sim.add_job(_spec())
    sim.set_faults(Faults(rate_503=1.0))
    started_ms = clock.now_ms()
    view, out, err = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, give_up_after_ms=5 * MINUTE)
    assert result.exit_code == EXIT_UNKNOWN and result.reason.startswith("API unreachable")
    assert clock.now_ms() - started_ms >= 5 * MINUTE
    events, summary = _lines(out)
    assert [event["kind"] for event in events] == ["watcher.api_unreachable"]
    assert summary["exit_code"] == 4 and summary["state"] is None
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("benchwatch: warning: ")]
    assert len(warnings) >= 2 and all("HTTP 503" in line and "still waiting" in line for line in warnings)


async def test_the_timeout_exits_124_and_still_prints_the_summary(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    plan = sim.add_job(_spec(scenario_duration_s=(600, 900)))
    started_ms = clock.now_ms()
    out, err = io.StringIO(), io.StringIO()
    result = await _wait(
        sim_url, fake_sleep, PlainView(out, err), job_id=plan.job_id, interval_ms=MINUTE, timeout_ms=5 * MINUTE
    )
    assert result.exit_code == EXIT_TIMEOUT and "the job is still running" in result.reason
    assert clock.now_ms() - started_ms == 5 * MINUTE  # the last sleep is cut to the deadline
    text = out.getvalue()
    assert " score " in text and "claude-code" in text and "codex" in text
    assert text.rstrip().endswith("exit 124: --timeout 5m elapsed; the job is still running")
    assert err.getvalue() == ""


# -- transient faults ---------------------------------------------------------------------------------


async def test_a_transient_outage_is_reported_and_the_wait_goes_on(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, clock: ManualClock
) -> None:
    plan = sim.add_job(_spec())
    sim.set_faults(Faults(rate_503=1.0))
    heal_at_ms = clock.now_ms() + 3 * MINUTE

    def heal(_: int) -> None:
        if clock.now_ms() >= heal_at_ms:
            sim.set_faults(Faults())

    fake_sleep.on_sleep = heal
    view, out, err = _json_view()
    result = await _wait(sim_url, fake_sleep, view, job_id=plan.job_id, give_up_after_ms=10 * MINUTE)
    assert result.exit_code == EXIT_OK, result.reason
    assert "benchwatch: warning: GET /v1/benchmark_jobs/" in err.getvalue()
    events, summary = _lines(out)  # warnings never reach stdout in --json mode
    assert events[-1]["kind"] == "job.finished" and summary["exit_code"] == 0


async def test_flaky_api_answers_do_not_end_the_wait(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    plan = sim.add_job(_spec())
    sim.set_faults(Faults(rate_503=0.5))
    view, out, err = _json_view()
    no_retries = {"retry": RetryPolicy(max_attempts=1)}  # every 503 reaches the wait loop
    result = await _wait(sim_url, fake_sleep, view, client_options=no_retries, job_id=plan.job_id)
    assert result.exit_code == EXIT_OK, result.reason
    assert err.getvalue().count("benchwatch: warning: ") >= 2
    _, summary = _lines(out)
    assert summary["counts"]["n_done"] == 12


# -- usage errors (exit 2) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"job_id": "bmj_1", "thresholds": Thresholds(min_score=1.5)}, "--min-score must be between 0 and 1, got 1.5"),
        ({"job_id": "bmj_1", "thresholds": Thresholds(max_failure_rate=-0.1)}, "--max-failure-rate must be between"),
        ({"job_id": "bmj_1", "interval_ms": 10}, "--interval must be at least 100ms"),
        ({"job_id": "bmj_1", "name": "nightly"}, "either JOB_ID or --name"),
        ({}, "either JOB_ID or --name"),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace("+", r"\+")):
        WaitOptions(**options)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--interval", "10x"], "--interval: expected a duration"),
        (["--timeout", "soon"], "--timeout: expected a duration"),
        (["--give-up-after", "5"], "--give-up-after: expected a duration"),
        (["--junit", "/no/such/folder/report.xml"], "--junit: the folder"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], message: str) -> None:
    args = build_parser().parse_args(["wait", "bmj_1", *argv])
    with pytest.raises(UsageError, match=message):
        options_from_args(args)


def test_arguments_become_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["wait", "--name", "nightly", "--interval", "30s", "--timeout", "0", "--min-score", "0.5",
         "--junit", str(tmp_path / "report.xml")]
    )  # fmt: skip
    options = options_from_args(args)
    assert (options.job_id, options.name, options.interval_ms, options.timeout_ms) == (None, "nightly", 30_000, None)
    assert options.give_up_after_ms == 5 * MINUTE and options.thresholds == Thresholds(min_score=0.5)


def test_usage_errors_exit_2_from_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as help_exit:
        main(["wait", "--help"])
    assert help_exit.value.code == 0 and "usage: benchwatch wait" in capsys.readouterr().out
    assert main(["wait", "bmj_1", "--min-score", "1.5"]) == 2
    assert capsys.readouterr().err == "benchwatch: error: --min-score must be between 0 and 1, got 1.5\n"
    assert main(["wait"]) == 2  # not at a terminal: nothing to pick from
    assert capsys.readouterr().err == (
        "benchwatch: error: give JOB_ID, --name or --latest (at a terminal, wait lists the running jobs to pick from)\n"
    )
    for argv in (
        ["wait", "bmj_1", "--name", "nightly"],
        ["wait", "bmj_1", "--latest"],
        ["wait", "bmj_1", "--min-score", "high"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2


# -- outputs ----------------------------------------------------------------------------------------------


async def test_plain_mode_prints_one_event_line_per_event(aiohttp_server: ServerFactory) -> None:
    """The same job, waited for twice from identical simulators: once as JSON, once as plain lines."""
    outputs = []
    for view_class in (JsonView, PlainView):
        clock = ManualClock()
        sim = Simulator(seed=11, clock=clock)
        plan = sim.add_job(_spec(fail_rate=0.2, timeout_rate=0.1, scenario_timeout_s=200))
        server = await aiohttp_server(create_app(sim))
        out, err = io.StringIO(), io.StringIO()
        result = await _wait(
            str(server.make_url("")).rstrip("/"), FakeSleep(clock), view_class(out, err), job_id=plan.job_id
        )
        assert result.exit_code == EXIT_OK
        outputs.append(out.getvalue().splitlines())
    json_lines, plain_lines = outputs
    expected = [event_line(event_from_json(line)) for line in json_lines[:-1]]
    assert any(" failed: " in line or "timed out: " in line for line in expected)
    assert plain_lines[: len(expected)] == expected
    report = "\n".join(plain_lines[len(expected) :])
    assert " score " in report and "failures by type:" in report and "dashboard:" in report
    assert plain_lines[-1] == "exit 0: the job completed"
    assert all(line == line.rstrip() for line in plain_lines)


def _progress(n_agents: int) -> WaitProgress:
    agents = tuple(
        AgentProgress(f"agent-{i}", f"model-{i}", done=i + 1, expected=6, n_failed=i, n_timeout=0,
                      score=0.5, finished=False, duration_ms=90_000)
        for i in range(n_agents)
    )  # fmt: skip
    return WaitProgress("bmj_1", "ci-nightly", "running", 125_000, agents)


@pytest.mark.parametrize("n_agents", [1, 3])
def test_the_live_view_has_one_bar_per_agent(n_agents: int) -> None:
    console = Console(record=True, force_terminal=True, width=120)
    console.print(live_table(_progress(n_agents)))
    lines = console.export_text().splitlines()
    bars = [line for line in lines if "━" in line]
    assert len(bars) == n_agents
    for index, line in enumerate(bars):
        assert f"agent-{index}" in line and f"{index + 1}/6" in line and "0.500" in line and "1m30s" in line
    assert "ci-nightly · running · waiting 2m5s" in lines[0]


async def test_rich_mode_shows_bars_while_waiting_then_the_final_table(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(_spec(fail_rate=0.3, scenario_timeout_s=200))
    console = Console(record=True, force_terminal=True, width=120)
    err = io.StringIO()
    result = await _wait(sim_url, fake_sleep, RichView(console, err), job_id=plan.job_id)
    assert result.exit_code == EXIT_OK
    text = console.export_text()
    for agent in ("claude-code", "codex"):
        assert any(agent in line and "━" in line and "/6" in line for line in text.splitlines())
    assert "ci-nightly: discovered, " in text and "run finished: codex" in text  # events above the view
    assert " score " in text and "completed" in text and text.rstrip().endswith("exit 0: the job completed")
    logger = logging.getLogger("benchwatch")
    assert logger.propagate and not logger.handlers  # the loggers are given back


# -- JUnit ------------------------------------------------------------------------------------------------


def _expected_counts(outcome: BenchmarkOutcome) -> dict[str, int]:
    scenarios = outcome.scenario_outcomes or ()
    states = Counter(s.state for s in scenarios)
    low_scores = sum(1 for s in scenarios if s.state == ScenarioState.COMPLETED and (s.score or 0.0) < 1.0)
    return {
        "tests": len(scenarios),
        "failures": states[ScenarioState.FAILED] + low_scores,
        "errors": states[ScenarioState.TIMEOUT],
        "skipped": states[ScenarioState.CANCELED],
    }


async def test_junit_has_a_suite_per_agent_matching_the_outcomes(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    spec = _spec(n_scenarios=12, fail_rate=0.25, timeout_rate=0.15, cancel_rate=0.1, scenario_timeout_s=200)
    plan = sim.add_job(spec)
    report = tmp_path / "report.xml"
    result = await _wait(
        sim_url,
        fake_sleep,
        _json_view()[0],
        job_id=plan.job_id,
        junit_path=report,
        thresholds=Thresholds(min_score=0.0),
    )
    assert result.exit_code == EXIT_OK
    job = BenchmarkJobView.model_validate(sim.job_view(plan.job_id))
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites" and root.get("name") == "ci-nightly"
    suites = {suite.get("name"): suite for suite in root.findall("testsuite")}
    assert list(suites) == ["claude-code", "codex", VERDICT_SUITE]
    totals: Counter[str] = Counter()
    for outcome in job.benchmark_outcomes or ():
        suite = suites[outcome.agent_name]
        expected = _expected_counts(outcome)
        assert {key: int(suite.get(key, "-1")) for key in expected} == expected
        totals.update(expected)
        assert float(suite.get("time", "0")) == pytest.approx((outcome.duration_ms or 0) / 1000, abs=0.001)
        _check_cases(suite, outcome)
    assert totals["failures"] and totals["errors"] and totals["skipped"]  # the job exercised every mapping
    verdicts = suites[VERDICT_SUITE].findall("testcase")
    assert [case.get("name") for case in verdicts] == ["job state", "min-score 0"]
    assert all(len(case) == 0 for case in verdicts)
    assert int(root.get("tests", "0")) == totals["tests"] + 2
    assert int(root.get("failures", "0")) == totals["failures"]


def _check_cases(suite: ET.Element, outcome: BenchmarkOutcome) -> None:
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    for scenario in outcome.scenario_outcomes or ():
        case = cases[scenario.scenario_name]
        assert case.get("classname") == outcome.agent_name
        assert float(case.get("time", "0")) == pytest.approx((scenario.duration_ms or 0) / 1000, abs=0.001)
        reason = scenario.failure_reason
        if scenario.state == ScenarioState.FAILED:
            failure = case.find("failure")
            assert failure is not None and reason is not None
            assert (failure.get("type"), failure.get("message"), failure.text) == (
                reason.exception_type, reason.exception_message, reason.exception_message
            )  # fmt: skip
        elif scenario.state == ScenarioState.TIMEOUT:
            error = case.find("error")
            assert error is not None and error.get("type") == "timeout" and error.get("message")
        elif scenario.state == ScenarioState.CANCELED:
            skipped = case.find("skipped")
            assert skipped is not None and skipped.get("message") == "canceled"
        elif scenario.score is not None and scenario.score < 1.0:
            failure = case.find("failure")
            assert failure is not None and failure.get("type") == "score"
            assert failure.get("message") == f"score {scenario.score:g}"
        else:
            assert len(case) == 0


async def test_junit_of_a_job_failed_without_outcomes(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(outcome="failed", end_after_s=60))
    report = tmp_path / "report.xml"
    result = await _wait(sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id, junit_path=report)
    assert result.exit_code == EXIT_JOB_FAILED
    root = ET.parse(report).getroot()
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == VERDICT_SUITE and (suite.get("tests"), suite.get("errors")) == ("1", "1")
    error = suite.find("testcase/error")
    assert error is not None and error.get("type") == "failed"
    assert error.get("message") == SETUP_FAILURE_REASON and error.text == SETUP_FAILURE_REASON


async def test_junit_is_written_when_the_wait_cannot_tell(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    report = tmp_path / "report.xml"
    result = await _wait(sim_url, fake_sleep, _json_view()[0], name="ghost", junit_path=report)
    assert result.exit_code == EXIT_UNKNOWN
    error = ET.parse(report).getroot().find("testsuite/testcase/error")
    assert error is not None and error.get("type") == "unknown" and error.get("message") == "no job named 'ghost'"


def test_junit_escapes_markup_and_drops_control_characters() -> None:
    nasty = "assert a < b && \"c\" > 'd'\x1b[31m\x00"
    outcome = BenchmarkOutcome(
        benchmark_run_id="bmr_1",
        agent_name="agent <&>",
        scenario_outcomes=(
            ScenarioOutcome(
                scenario_definition_id="scn_1",
                scenario_name="name with ]]> inside",
                state=ScenarioState.FAILED,
                failure_reason=FailureReason(exception_type="Error<T>", exception_message=nasty),
            ),
        ),
    )
    tree = junit_tree("job & co", [outcome], [Verdict("job state")])
    root = ET.fromstring(ET.tostring(tree.getroot(), encoding="unicode"))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "Error<T>"
    assert failure.text == "assert a < b && \"c\" > 'd'\ufffd[31m\ufffd"
    assert root.find("testsuite/testcase") is not None
    assert root.findall("testsuite")[0].get("name") == "agent <&>"


JUNIT_SCHEMA = etree.XMLSchema(etree.parse(Path(__file__).parent / "fixtures" / "junit.xsd"))


def _valid_junit(path: Path) -> etree._Element:
    """The report, parsed by lxml and valid against the CI servers' JUnit schema (tests/fixtures/junit.xsd)."""
    document = etree.parse(path)
    assert JUNIT_SCHEMA.validate(document), [str(error) for error in JUNIT_SCHEMA.error_log][:5]
    return document.getroot()


async def test_junit_of_a_hostile_huge_job_is_valid_for_ci_servers(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec())
    sim.tamper(plan.job_id, {key: value for key, value in hostile.job_view("completed", outcomes=True).items()
                             if key != "id"})  # fmt: skip
    report = tmp_path / "report.xml"
    result = await _wait(
        sim_url, fake_sleep, _json_view()[0], job_id=plan.job_id, junit_path=report,
        thresholds=Thresholds(min_score=0.9),
    )  # fmt: skip
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    root = _valid_junit(report)
    suites = root.findall("testsuite")
    assert len(suites) == hostile.N_AGENTS + 1 and suites[0].get("name", "").startswith("agent-00 <!channel>")
    failures = root.findall("testsuite/testcase/failure")
    assert sum(1 for f in failures if len(f.get("message", "")) == hostile.MESSAGE_CHARS) >= 380
    assert all("\x00" not in (f.text or "") for f in failures)  # the NUL of the hostile text cannot be in XML
    assert int(root.get("tests", "0")) == sum(int(suite.get("tests", "0")) for suite in suites)


async def test_junit_files_of_every_ending_are_valid_for_ci_servers(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    mixed = sim.add_job(
        _spec(n_scenarios=12, fail_rate=0.25, timeout_rate=0.15, cancel_rate=0.1, scenario_timeout_s=200)
    )
    failed = sim.add_job(_spec(name="setup-failed", outcome="failed", end_after_s=60))
    for index, target in enumerate([{"job_id": mixed.job_id}, {"job_id": failed.job_id}, {"name": "ghost"}]):
        report = tmp_path / f"report-{index}.xml"
        await _wait(sim_url, fake_sleep, _json_view()[0], junit_path=report, **target)
        _valid_junit(report)


# -- the real process ---------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP_")}


async def _run(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *BENCHWATCH, *args, env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _fast_sim(aiohttp_server: ServerFactory) -> tuple[Simulator, str]:
    """The simulator on a clock that the process's own requests move: each GET of a job moves it 60 simulated
    seconds (a job of 4 scenarios of 5 to 7.5 minutes, 2 at a time, ends within about 15 polls), so a busy machine
    that starts the process late never finds the job already over."""
    clock = ManualClock()
    sim = Simulator(seed=3, clock=clock)

    @web.middleware
    async def pace(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "GET" and request.path.startswith("/v1/benchmark_jobs/"):
            clock.advance(60_000)
        response: web.StreamResponse = await handler(request)
        return response

    app = create_app(sim)
    app.middlewares.append(pace)
    server = await aiohttp_server(app)
    return sim, str(server.make_url("")).rstrip("/")


@pytest.mark.slow
async def test_the_process_exits_0_with_json_lines_and_a_junit_file(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    sim, url = await _fast_sim(aiohttp_server)
    plan = sim.add_job(_spec(n_scenarios=4, concurrency=2, scenario_duration_s=(300, 450), init_s=1, queue_s=1))
    report = tmp_path / "junit.xml"
    code, out, err = await _run(
        "wait",
        plan.job_id,
        "--base-url",
        url,
        "--interval",
        "100ms",
        "--min-score",
        "0",
        "--json",
        "--junit",
        str(report),
    )
    assert code == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    summary = json.loads(lines[-1])
    events = [event_from_json(line) for line in lines[:-1]]
    assert summary["type"] == "summary" and summary["exit_code"] == 0 and summary["state"] == "completed"
    assert events[-1].kind == "job.finished" and len(events) > 2  # seen while it ran, not only at the end
    assert [suite.get("name") for suite in ET.parse(report).getroot()] == ["claude-code", "codex", VERDICT_SUITE]


@pytest.mark.slow
async def test_the_process_prints_plain_lines_when_not_a_terminal(aiohttp_server: ServerFactory) -> None:
    sim, url = await _fast_sim(aiohttp_server)
    sim.add_job(
        _spec(name="plain-job", n_scenarios=4, concurrency=2, scenario_duration_s=(300, 450), init_s=1, queue_s=1)
    )
    code, out, err = await _run("wait", "--name", "plain-job", "--base-url", url, "--interval", "100ms")
    assert code == 0, err
    assert "plain-job: finished: running → completed" in out
    assert out.rstrip().endswith("exit 0: the job completed")


@pytest.mark.slow
async def test_the_process_exits_2_on_usage_errors(aiohttp_server: ServerFactory) -> None:
    _, url = await _fast_sim(aiohttp_server)
    code, out, err = await _run("wait", "bmj_1", "--base-url", url, "--min-score", "1.5", "--json")
    assert (code, out) == (2, "")
    assert err == "benchwatch: error: --min-score must be between 0 and 1, got 1.5\n"
    code, out, err = await _run("wait", "--base-url", url)
    assert code == 2 and out == "" and "give JOB_ID, --name or --latest" in err


def test_the_documented_summary_line_is_valid() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "wait.md").read_text()
    (example,) = re.findall(r"```json\n(.*?)```", doc, re.DOTALL)
    line = SummaryLine.model_validate_json(example)
    assert line.exit_code == 3 and line.thresholds.missed[0].message in line.reason


# The first request of `benchwatch wait JOB_ID` goes out before the heavy part of `wait` is imported: the probe
# notes which modules are loaded when aiohttp sends its first request, then runs the real command.
_FIRST_REQUEST_PROBE = """
import json, sys
import aiohttp
send = aiohttp.ClientSession._request
def noting(self, *args, **kwargs):
    if not hasattr(noting, "modules"):
        noting.modules = sorted(sys.modules)
        with open(sys.argv[1], "w") as out:
            json.dump(noting.modules, out)
    return send(self, *args, **kwargs)
aiohttp.ClientSession._request = noting
from watcher.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
_LATER = ("pydantic", "rich", "rules", "celpy", "jinja2", "yaml", "watcher.core.models",
                                   "watcher.app", "watcher.cli.wait.loop", "watcher.cli.wait.views")  # fmt: skip


@pytest.mark.slow
async def test_the_first_request_goes_out_before_models_rules_and_views_are_imported(
    sim: Simulator, clock: ManualClock, sim_url: str, tmp_path: Path
) -> None:
    plan = sim.add_job(_spec(n_scenarios=2))
    clock.advance(24 * 3_600_000)  # long over: one poll, exit 0
    loaded = tmp_path / "modules.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _FIRST_REQUEST_PROBE, str(loaded), "wait", plan.job_id, "--base-url", sim_url,
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == EXIT_OK, err.decode()
    assert "the job completed" in out.decode()  # the early answer was used as the first poll's
    modules = set(json.loads(loaded.read_text()))
    assert {"aiohttp", "watcher.api.client", "watcher.cli.wait.first"} <= modules
    early = sorted(m for m in modules if any(m == name or m.startswith(f"{name}.") for name in _LATER))
    assert early == []
    assert sim.request_log[0] == f"GET /v1/benchmark_jobs/{plan.job_id}"  # and that first request was the job's
