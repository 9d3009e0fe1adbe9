"""The simulator: the real lifecycle and quirks on a clock the test moves, determinism, the HTTP surface."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from watcher.core.clock import ManualClock
from watcher.core.models import BenchmarkJobView, ScenarioRunListView
from watcher.simulator import Faults, JobPlan, SimAgent, SimJobSpec, Simulator, demo_specs
from watcher.simulator.views import job_view, scenario_run_views

ONE_AGENT = [SimAgent(name="claude-code", model_name="claude-sonnet-4-6")]


def _view(sim: Simulator, plan: JobPlan) -> BenchmarkJobView:
    return BenchmarkJobView.model_validate(sim.job_view(plan.job_id))


def test_a_job_moves_through_the_real_lifecycle(sim: Simulator, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=6, init_s=5, queue_s=10))
    assert _view(sim, plan).state == "initializing"
    clock.advance(6_000)
    assert _view(sim, plan).state == "queued"
    clock.set(plan.running_ms)
    running = _view(sim, plan)
    assert running.state == "running" and running.benchmark_outcomes == ()
    assert {run.benchmark_run_id for run in running.in_progress_runs or ()} == {plan.runs[0].run_id}
    assert plan.end_ms is not None
    clock.set(plan.end_ms)
    done = _view(sim, plan)
    assert done.state == "completed"
    outcomes = done.benchmark_outcomes or ()
    assert [o.benchmark_run_id for o in outcomes] == [run.run_id for run in plan.runs]
    assert all(o.n_completed + o.n_failed + o.n_timeout <= 6 for o in outcomes)
    assert all(len(o.scenario_outcomes or ()) == 6 for o in outcomes)


def test_a_run_has_an_outcome_only_once_finished_and_lingers_in_progress(sim: Simulator, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=4, agents=ONE_AGENT, run_linger_s=15, completion_delay_s=30))
    run = plan.runs[0]
    clock.set(run.end_ms - 1)
    before = _view(sim, plan)
    assert before.benchmark_outcomes == () and before.in_progress_runs and before.in_progress_runs[0].state == "running"
    clock.set(run.end_ms)
    after = _view(sim, plan)
    assert after.benchmark_outcomes and after.benchmark_outcomes[0].benchmark_run_id == run.run_id
    assert after.in_progress_runs and after.in_progress_runs[0].benchmark_run_id == run.run_id  # the quirk
    assert after.in_progress_runs[0].state == "completed"
    clock.set(run.end_ms + 15_000)
    assert _view(sim, plan).in_progress_runs == ()


def test_a_job_failing_in_setup_has_no_outcomes_only_a_reason(sim: Simulator, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(outcome="failed", end_after_s=60))
    assert plan.end_ms is not None
    clock.set(plan.end_ms)
    job = _view(sim, plan)
    assert job.state == "failed" and job.benchmark_outcomes is None
    assert job.failure_reason and "setup failed" in job.failure_reason


@pytest.mark.parametrize(("outcome", "run_state"), [("cancelled", "canceled"), ("timeout", "canceled")])
def test_an_aborted_job_cancels_unfinished_scenarios(
    sim: Simulator, clock: ManualClock, outcome: str, run_state: str
) -> None:
    plan = sim.add_job(SimJobSpec(outcome=outcome, end_after_s=200, n_scenarios=20, agents=ONE_AGENT))  # type: ignore[arg-type]
    assert plan.end_ms is not None
    clock.set(plan.end_ms)
    job = _view(sim, plan)
    assert job.state == outcome
    (result,) = job.benchmark_outcomes or ()
    states = [s.state for s in result.scenario_outcomes or ()]
    assert "CANCELED" in states and len(states) == 20
    assert job.in_progress_runs and job.in_progress_runs[0].state == run_state
    runs = scenario_run_views(plan, plan.runs[0], clock.now_ms())
    assert all(view["state"] != "running" for view in runs)


def test_scenario_runs_move_through_their_states(sim: Simulator, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=40, concurrency=10, agents=ONE_AGENT, fail_rate=0.2, timeout_rate=0.1))
    run = plan.runs[0]
    seen: set[str] = set()
    assert plan.end_ms is not None
    for now_ms in range(plan.running_ms, plan.end_ms + 20_000, 5_000):
        clock.set(now_ms)
        views = scenario_run_views(plan, run, now_ms)
        ScenarioRunListView.model_validate({"runs": views, "has_more": False})
        seen.update(view["state"] for view in views)
    assert {"running", "scoring", "scored", "completed", "failed", "timeout"} <= seen


def test_retries_show_a_failed_then_a_completed_scenario_run(sim: Simulator) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=60, n_attempts=1, fail_rate=0.3, timeout_rate=0.0, agents=ONE_AGENT))
    retried = [s for s in plan.runs[0].scenarios if len(s.attempts) == 2 and s.attempts[1].final_state == "scored"]
    assert retried, "seed 7 should retry at least one scenario successfully"
    scenario = retried[0]
    assert scenario.attempts[0].final_state in ("failed", "timeout")
    assert scenario.attempts[0].scenario_run_id != scenario.attempts[1].scenario_run_id
    assert plan.end_ms is not None
    outcome = next(
        s for s in job_view(plan, plan.end_ms)["benchmark_outcomes"][0]["scenario_outcomes"]
        if s["scenario_definition_id"] == scenario.definition_id
    )  # fmt: skip
    assert outcome["state"] == "COMPLETED" and outcome["scenario_run_id"] == scenario.attempts[1].scenario_run_id


def test_chosen_failures_carry_their_exception_type_and_setup_failures_have_no_scenario_run(sim: Simulator) -> None:
    results = {"a": "setup", "b": "setup:MyEnvError", "c": "failed:RateLimitError", "d": "timeout", "e": 1.0}
    plan = sim.add_job(SimJobSpec(scenario_ids=list(results), agents=[SimAgent(name="x", results=results)]))
    assert plan.end_ms is not None
    listed_outcomes = job_view(plan, plan.end_ms)["benchmark_outcomes"][0]["scenario_outcomes"]
    outcomes = {s["scenario_definition_id"]: s for s in listed_outcomes}
    assert [(o["state"], o["failure_reason"] and o["failure_reason"]["exception_type"]) for o in outcomes.values()] == [
        ("FAILED", "DevboxSetupError"),
        ("FAILED", "MyEnvError"),
        ("FAILED", "RateLimitError"),
        ("TIMEOUT", "AgentTimeoutError"),
        ("COMPLETED", None),
    ]
    assert [o["scenario_run_id"] is None for o in outcomes.values()] == [True, True, False, False, False]
    listed = {view["scenario_id"] for view in scenario_run_views(plan, plan.runs[0], plan.end_ms)}
    assert listed == {"c", "d", "e"}  # the API lists no scenario run for a scenario that failed in setup
    with pytest.raises(ValueError, match="'crashed' is not a score nor one of failed, timeout, canceled, setup"):
        SimAgent(name="x", results={"a": "crashed"})


def test_a_stalled_job_stays_running_and_stops_changing(sim: Simulator, clock: ManualClock) -> None:
    plan = sim.add_job(SimJobSpec(stall_after_s=120, n_scenarios=30))
    assert plan.end_ms is None and plan.stop_ms is not None
    clock.set(plan.stop_ms + 1_000)
    frozen = sim.job_view(plan.job_id)
    clock.advance(24 * 3600 * 1000)
    later = sim.job_view(plan.job_id)
    assert later["state"] == "running"
    assert later["benchmark_outcomes"] == frozen["benchmark_outcomes"]
    assert [r["benchmark_run_id"] for r in later["in_progress_runs"]] == [
        r["benchmark_run_id"] for r in frozen["in_progress_runs"]
    ]


def _lifetime(seed: int) -> list[dict[str, Any]]:
    clock = ManualClock()
    sim = Simulator(seed=seed, clock=clock)
    plans = [sim.add_job(spec) for spec in demo_specs()]
    views = []
    for _ in range(60):
        views.extend(sim.job_view(plan.job_id) for plan in plans)
        clock.advance(30_000)
    return views


def test_the_same_seed_and_clock_give_the_same_responses() -> None:
    assert _lifetime(3) == _lifetime(3)
    assert _lifetime(3) != _lifetime(4)


def test_duplicate_names_are_refused(sim: Simulator) -> None:
    sim.add_job(SimJobSpec(name="nightly"))
    with pytest.raises(ValueError, match="exists already"):
        sim.add_job(SimJobSpec(name="nightly"))


async def test_http_surface(sim: Simulator, sim_url: str, clock: ManualClock) -> None:
    async with aiohttp.ClientSession() as http:
        created = await (
            await http.post(
                f"{sim_url}/v1/benchmark_jobs",
                json={
                    "name": "ci-run",
                    "spec": {
                        "type": "scenarios",
                        "scenario_ids": ["scn_a", "scn_b"],
                        "agent_configs": [{"type": "job_agent", "name": "x"}],
                    },
                    "simulation": {"fail_rate": 1.0},
                },
            )
        ).json()
        assert created["name"] == "ci-run" and created["job_spec"]["scenario_ids"] == ["scn_a", "scn_b"]
        clock.advance(1000)
        sim.add_job(SimJobSpec(name="newer"))
        listing = await (await http.get(f"{sim_url}/v1/benchmark_jobs", params={"include_total_count": "false"})).json()
        assert [job["name"] for job in listing["jobs"]] == ["newer", "ci-run"] and listing["total_count"] is None
        by_name = await (await http.get(f"{sim_url}/v1/benchmark_jobs", params={"name": "ci-run"})).json()
        assert [job["id"] for job in by_name["jobs"]] == [created["id"]] and by_name["total_count"] == 1
        missing = await http.get(f"{sim_url}/v1/benchmark_jobs/bmj_missing")
        assert missing.status == 404 and (await missing.json())["message"] == "benchmark job not found"
        too_many = await http.get(f"{sim_url}/v1/benchmark_jobs", params={"limit": "5001"})
        assert too_many.status == 400
        bad_cursor = await http.get(f"{sim_url}/v1/benchmark_jobs", params={"starting_after": "bmj_unknown"})
        assert bad_cursor.status == 400
        bad_create = await http.post(f"{sim_url}/v1/benchmark_jobs", json={"name": "ci-run"})
        assert bad_create.status == 400 and "exists already" in (await bad_create.json())["message"]


async def test_faults_switch_while_running(sim: Simulator, sim_url: str) -> None:
    plan = sim.add_job()
    url = f"{sim_url}/v1/benchmark_jobs/{plan.job_id}"
    async with aiohttp.ClientSession() as http:
        put = await http.put(f"{sim_url}/_sim/faults", json={"rate_429": 1.0, "retry_after_s": 3})
        assert put.status == 200
        limited = await http.get(url)
        assert limited.status == 429 and limited.headers["Retry-After"] == "3"
        await http.put(f"{sim_url}/_sim/faults", json={"rate_503": 1.0})
        assert (await http.get(url)).status == 503
        await http.put(f"{sim_url}/_sim/faults", json={"rate_malformed": 1.0})
        malformed = await http.get(url)
        assert malformed.status == 200 and (await malformed.read()) == b'{"id": "bmj_'
        bad = await http.put(f"{sim_url}/_sim/faults", json={"rate_429": 2})
        assert bad.status == 400
        await http.put(f"{sim_url}/_sim/faults", json={})
        assert (await http.get(url)).status == 200
    assert sim.faults == Faults()


async def test_tampered_fields_are_served_over_the_truth_until_cleared(sim: Simulator, sim_url: str) -> None:
    plan = sim.add_job(SimJobSpec(name="honest"))
    url = f"{sim_url}/v1/benchmark_jobs/{plan.job_id}"
    async with aiohttp.ClientSession() as http:
        put = await http.put(f"{url.replace('/v1/benchmark_jobs', '/_sim/jobs')}/tamper", json={"name": None})
        assert put.status == 200
        assert (await (await http.get(url)).json())["name"] is None
        listed = await (await http.get(f"{sim_url}/v1/benchmark_jobs")).json()
        assert listed["jobs"][0]["name"] is None and listed["jobs"][0]["id"] == plan.job_id
        missing = await http.put(f"{sim_url}/_sim/jobs/bmj_nope/tamper", json={})
        assert missing.status == 404
        assert (await http.put(f"{sim_url}/_sim/jobs/{plan.job_id}/tamper", json=[1])).status == 400
        await http.put(f"{sim_url}/_sim/jobs/{plan.job_id}/tamper", json={})
        assert (await (await http.get(url)).json())["name"] == "honest"


async def test_a_runs_tampered_scenario_runs_are_served_until_cleared(
    sim: Simulator, sim_url: str, clock: ManualClock
) -> None:
    plan = sim.add_job(SimJobSpec(name="runs", n_scenarios=3))
    clock.advance(5 * 60_000)
    run_id = plan.runs[0].run_id
    url = f"{sim_url}/v1/benchmark_runs/{run_id}/scenario_runs"
    async with aiohttp.ClientSession() as http:
        put = await http.put(f"{sim_url}/_sim/runs/{run_id}/tamper", json={"scenario_id": None})
        assert put.status == 200 and await put.json() == {"tampered": ["scenario_id"]}
        runs = (await (await http.get(url)).json())["runs"]
        assert runs and {run["scenario_id"] for run in runs} == {None}
        assert (await http.put(f"{sim_url}/_sim/runs/bmr_nope/tamper", json={})).status == 404
        assert (await http.put(f"{sim_url}/_sim/runs/{run_id}/tamper", json="x")).status == 400
        await http.put(f"{sim_url}/_sim/runs/{run_id}/tamper", json={})
        assert None not in {run["scenario_id"] for run in (await (await http.get(url)).json())["runs"]}


async def test_a_removed_job_vanishes_from_the_api(sim: Simulator, sim_url: str) -> None:
    plan = sim.add_job(SimJobSpec(name="doomed"))
    async with aiohttp.ClientSession() as http:
        assert (await http.delete(f"{sim_url}/_sim/jobs/{plan.job_id}")).status == 200
        assert (await http.get(f"{sim_url}/v1/benchmark_jobs/{plan.job_id}")).status == 404
        assert (await (await http.get(f"{sim_url}/v1/benchmark_jobs")).json())["jobs"] == []
        assert (await http.delete(f"{sim_url}/_sim/jobs/{plan.job_id}")).status == 404
    sim.add_job(SimJobSpec(name="doomed"))  # its name is free again


async def test_raw_bytes_are_served_where_a_tampered_value_goes(sim: Simulator, sim_url: str) -> None:
    plan = sim.add_job(SimJobSpec(name="raw"))
    fields = {"average": {"$raw": "1e400"}, "notes": {"$raw_base64": "ImNhZuki"}}
    async with aiohttp.ClientSession() as http:
        put = await http.put(f"{sim_url}/_sim/jobs/{plan.job_id}/tamper", json=fields)
        assert put.status == 200
        body = await (await http.get(f"{sim_url}/v1/benchmark_jobs/{plan.job_id}")).read()
        listed = await (await http.get(f"{sim_url}/v1/benchmark_jobs")).read()
    assert b'"average":1e400,"notes":"caf\xe9"' in body and b'"average":1e400,"notes":"caf\xe9"' in listed
