"""The official SDK (runloop-api-client 1.32.0, strict validation) parses everything the simulator serves."""

from __future__ import annotations

import pytest
from runloop_api_client import AsyncRunloop

from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator, demo_specs


def _cast() -> list[SimJobSpec]:
    return [
        *demo_specs(),
        SimJobSpec(name="retries", n_attempts=2, fail_rate=0.4, n_scenarios=10),
        SimJobSpec(name="cancelled", outcome="cancelled", end_after_s=400),
        SimJobSpec(name="timed-out", outcome="timeout", end_after_s=300, cancel_rate=0.1),
        SimJobSpec(name="no-model", agents=[SimAgent(name="bare")], n_scenarios=3),
        SimJobSpec(name="empty", n_scenarios=0),
        SimJobSpec(  # a benchmark source, and chosen results (regression tests use these)
            name="nightly",
            benchmark_id="bm_1",
            scenario_ids=["scn_a", "scn_b", "scn_c", "scn_d"],
            agents=[
                SimAgent(name="a", results={"scn_a": 1.0, "scn_b": "failed", "scn_c": "timeout", "scn_d": "setup"})
            ],
        ),
    ]


@pytest.fixture
async def sdk(sim_url: str) -> AsyncRunloop:
    client = AsyncRunloop(base_url=sim_url, bearer_token="any", _strict_response_validation=True, max_retries=0)
    yield client  # type: ignore[misc]
    await client.close()


@pytest.mark.slow
async def test_every_endpoint_parses_across_every_job_life(
    sim: Simulator, clock: ManualClock, sdk: AsyncRunloop
) -> None:
    plans = [sim.add_job(spec) for spec in _cast()]
    checked_runs = 0
    for _ in range(40):  # 40 × 90 s covers every job's whole life
        listing = await sdk.benchmark_jobs.list(limit=5000)
        assert {job.id for job in listing.jobs} == {plan.job_id for plan in plans}
        for plan in plans:
            job = await sdk.benchmark_jobs.retrieve(plan.job_id)
            assert job.state == sim.job_view(plan.job_id)["state"]
            for run in job.in_progress_runs or []:
                assert (await sdk.benchmark_runs.retrieve(run.benchmark_run_id)).id == run.benchmark_run_id
                page = await sdk.benchmark_runs.list_scenario_runs(run.benchmark_run_id, limit=5000)
                assert all(scenario_run.benchmark_run_id == run.benchmark_run_id for scenario_run in page.runs)
                checked_runs += 1
        clock.advance(90_000)
    assert checked_runs > 0
    final_states = {(await sdk.benchmark_jobs.retrieve(plan.job_id)).state for plan in plans}
    assert {"completed", "failed", "cancelled", "timeout", "running"} <= final_states


async def test_sdk_paging_and_create(sim: Simulator, clock: ManualClock, sdk: AsyncRunloop) -> None:
    for index in range(12):
        sim.add_job(SimJobSpec(name=f"job-{index:02d}", n_scenarios=2))
        clock.advance(1000)
    created = await sdk.benchmark_jobs.create(
        name="from-sdk",
        spec={
            "type": "scenarios",
            "scenario_ids": ["scn_1", "scn_2"],
            "agent_configs": [{"type": "job_agent", "name": "a"}],
        },
    )
    assert created.name == "from-sdk" and created.state == "initializing"
    first = await sdk.benchmark_jobs.list(limit=5)
    assert first.has_more and len(first.jobs) == 5 and first.jobs[0].name == "from-sdk"
    names = []
    cursor = None
    while True:
        page = await sdk.benchmark_jobs.list(limit=5, **({"starting_after": cursor} if cursor else {}))
        names.extend(job.name for job in page.jobs)
        if not page.has_more:
            break
        cursor = page.jobs[-1].id
    assert names == ["from-sdk", *[f"job-{i:02d}" for i in range(11, -1, -1)]]
    clock.advance(60_000)
    job = await sdk.benchmark_jobs.retrieve(created.id)
    assert job.in_progress_runs
    run_id = job.in_progress_runs[0].benchmark_run_id
    scenario_runs = [run async for run in sdk.benchmark_runs.list_scenario_runs(run_id, limit=1)]  # SDK pages
    assert len(scenario_runs) == 2
