"""The benchmark harness keeps working: a tiny run of every benchmark (the figures are not judged here), and the
simulator's control endpoints the harness drives."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from benchmarks import hatable, replicas
from benchmarks.measure import GcTimer, stderr_of_mean
from tests.conftest import ServerFactory
from watcher.core.clock import ManualClock, SystemClock
from watcher.simulator import SimJobSpec, Simulator, create_app
from watcher.simulator.views import job_view, scenario_run_views

WORKLOADS = ("poll-small", "poll-many", "poll-large")
KIND_FIGURES = (
    "cpu_s", "cpu_ms_per_job", "cpu_ms_per_mb", "wall_s", "requests", "mb", "events_per_cpu_s", "floor_parse_s",
    "floor_hash_s", "floor_recv_cpu_s", "naive_cpu_s", "share_scenarios_finished", "scenario_records",
)  # fmt: skip
TARGETS = (
    "unchanged_cost_vs_parse", "changed_cost_vs_orjson", "naive_vs_benchwatch_cpu_unchanged",
    "naive_vs_benchwatch_cpu_changed", "detection_latency_p99_ms", "peak_rss_mb",
)  # fmt: skip


@pytest.mark.slow
def test_quick_run_prints_tables_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "notify-latency" in result.stdout and "baseline" in result.stdout
    assert all(f"{name}:" in result.stdout for name in WORKLOADS) and "naive SDK + DeepDiff" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["notify-latency"]["rounds"] == 20 and figures["machine"]["cpus"]
    for name in WORKLOADS:
        workload = figures[name]
        for kind in ("unchanged", "changed"):
            assert workload[kind]["cycles"] == 2 and workload[kind]["failed"] == 0
            assert all(workload[kind][figure] is not None for figure in KIND_FIGURES), (name, kind)
            assert workload[kind]["floor_same_bytes"], (name, kind)
        assert set(TARGETS) <= set(workload["targets"])
        assert workload["peak_rss_mb"] and workload["latency"]["manual_p99_ms"] is not None
        assert workload["unchanged"]["events"] == 0 and workload["changed"]["events"] > 0
    startup = figures["startup"]
    assert startup["rounds"] == 1 and "startup: median wall" in result.stdout
    assert set(startup["median_s"]) == {
        "python -c pass", "python -c 'import aiohttp'", "benchwatch --help", "benchwatch wait --help",
        "benchwatch wait: first request",
    } and all(seconds > 0 for seconds in startup["median_s"].values())  # fmt: skip
    unchanged = figures["unchanged"]
    assert all(unchanged[name]["bursts_s"] > 0 and unchanged[name]["views"] for name in ("small", "many", "large"))
    assert "of which the schedule (bare in bursts ÷ back to back)" in result.stdout
    many = figures["poll-many"]
    assert many["control"]["workload"]["name"] == "many-control"
    assert {"terminal_requests_unchanged", "terminal_cpu_s_changed"} <= set(many["targets"])
    assert many["unchanged"]["terminal_cpu_tolerance_s"] >= 0.001 and "garbage collector" in result.stdout


@pytest.mark.slow
def test_the_gc_timer_counts_collections_and_the_noise_bound_follows_the_spread() -> None:
    with GcTimer() as timer:
        for _ in range(20):
            cycles: list[object] = [[]]
            cycles[0] = cycles  # type: ignore[index]
            gc.collect()
    assert timer.cpu_s > 0
    assert gc.callbacks.count(timer._callback) == 0  # detached at the end of the block
    assert stderr_of_mean([1.0, 2.0, 3.0]) == pytest.approx(1 / 3**0.5)
    assert stderr_of_mean([5.0]) is None


async def test_control_endpoints_move_the_clock_add_workloads_and_count(sim_url: str) -> None:
    async with aiohttp.ClientSession() as http:
        clock = await (await http.get(f"{sim_url}/_sim/clock")).json()
        assert clock["manual"] is True
        workload = {"count": 3, "spec": {"n_scenarios": 4}, "name_prefix": "w", "age_s": [600, 1200]}
        created = await (await http.post(f"{sim_url}/_sim/workload", json=workload)).json()
        assert created == {"created": 3, "jobs": 3}
        listing = await (await http.get(f"{sim_url}/v1/benchmark_jobs?limit=10")).json()
        assert [job["name"] for job in listing["jobs"]] == ["w-00002", "w-00001", "w-00000"]
        assert listing["jobs"][-1]["create_time_ms"] == clock["now_ms"] - 1_200_000
        stats = await (await http.get(f"{sim_url}/_sim/stats")).json()
        assert stats["requests"] == 1 and stats["response_bytes"] > 0
        logged = await (await http.get(f"{sim_url}/_sim/requests?last=5")).json()
        assert logged["requests"] == ["GET /v1/benchmark_jobs?limit=10"]
        since = await (await http.get(f"{sim_url}/_sim/requests?since=0")).json()
        assert since == {"requests": ["GET /v1/benchmark_jobs?limit=10"], "first": 0, "next": 1}
        assert (await (await http.get(f"{sim_url}/_sim/requests?since=1")).json())["requests"] == []
        assert (await http.get(f"{sim_url}/_sim/requests?since=-1")).status == 400
        before = await (await http.get(f"{sim_url}/_sim/progress")).json()
        moved = await (await http.post(f"{sim_url}/_sim/clock", json={"advance_ms": 3_600_000})).json()
        assert moved["now_ms"] == clock["now_ms"] + 3_600_000
        after = await (await http.get(f"{sim_url}/_sim/progress")).json()
        assert after["scenario_runs_finished"] > before["scenario_runs_finished"] and after["jobs"] == 3
        assert "terminal_ids" not in after
        listed = await (await http.get(f"{sim_url}/_sim/progress?terminal_ids=true")).json()
        assert len(listed["terminal_ids"]) == after["jobs_terminal"] > 0  # an hour on: some have finished
        every = await (await http.get(f"{sim_url}/_sim/progress?job_ids=true")).json()
        assert len(every["job_ids"]) == 3 and set(listed["terminal_ids"]) <= set(every["job_ids"])
        bad = await http.post(f"{sim_url}/_sim/clock", json={"advance_ms": -1})
        assert bad.status == 400


async def test_cached_responses_are_the_views_of_the_moment(sim: Simulator, clock: ManualClock, sim_url: str) -> None:
    plan = sim.add_job(SimJobSpec(n_scenarios=6))
    run = plan.runs[0]
    clock.set(run.start_ms + 120_000)
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            for _ in range(2):  # the second answer comes from the cache
                page = await (await http.get(f"{sim_url}/v1/benchmark_runs/{run.run_id}/scenario_runs")).json()
                assert page["runs"] == scenario_run_views(plan, run, clock.now_ms())
                job = await (await http.get(f"{sim_url}/v1/benchmark_jobs/{plan.job_id}")).json()
                assert job == job_view(plan, clock.now_ms())
            clock.advance(200_000)
        other = sim.add_job(SimJobSpec(name="later"))
        listing = await (await http.get(f"{sim_url}/v1/benchmark_jobs")).json()
        assert [job["id"] for job in listing["jobs"]] == [other.job_id, plan.job_id]


async def test_the_clock_control_refuses_a_clock_that_runs_by_itself(aiohttp_server: ServerFactory) -> None:
    server = await aiohttp_server(create_app(Simulator(clock=SystemClock())))
    async with aiohttp.ClientSession() as http:
        answer = await http.post(str(server.make_url("/_sim/clock")), json={"advance_ms": 1})
        assert answer.status == 409 and "--manual-clock" in (await answer.json())["message"]


def _ha_figures(*, sqlite: float | None, postgres: float | None, failover_s: float | None) -> dict[str, Any]:
    window = {"seconds": 2.0, "cpu_s": [0.1, 0.05, 0.05], "changed_jobs": 4, "transactions": 40, "requests": 9}
    return {
        "sqlite_unchanged": {"cpu_vs_orjson": sqlite},
        "postgres_unchanged": {"cpu_vs_orjson": postgres},
        "failover": {"seconds": failover_s},
        "replicas_1": {**window, "cpu_s": [0.1], "transactions": 36},
        "replicas_3": window,
    }


def test_the_ha_targets_are_judged_against_fixed_limits_and_a_missing_figure_is_not_met() -> None:
    # The `ha` benchmark itself takes ~50 s even quick (real replicas and PostgreSQL): only its verdicts are tested.
    judged = replicas.targets(_ha_figures(sqlite=0.2, postgres=0.45, failover_s=None))
    assert judged["sqlite_unchanged_vs_orjson"] == {"value": 0.2, "limit": 0.3, "ratio": 0.67, "met": True}
    assert judged["postgres_unchanged_vs_orjson"]["met"] is False
    assert hatable.verdict(judged["postgres_unchanged_vs_orjson"]) == "MISSED (1.50× the limit)"
    assert judged["failover_s"]["met"] is False and hatable.verdict(judged["failover_s"]) == "not measured"
    window = _ha_figures(sqlite=0, postgres=0, failover_s=1)["replicas_3"]
    assert hatable.per_changed_job(window) == 10.0 and hatable.per_interval(window) == [0.05, 0.025, 0.025]
    assert hatable.per_changed_job({**window, "changed_jobs": 0}) is None
    # on the same changes, three replicas: 40 transactions and 0.2 CPU s all together; one: 36 and 0.1
    assert judged["replicas_transactions_ratio"] == {"value": 1.111, "limit": 1.2, "ratio": 0.93, "met": True}
    assert judged["replicas_cpu_ratio"]["value"] == 2.0 and judged["replicas_cpu_ratio"]["met"] is False


def test_three_shards_are_the_control_beside_three_replicas(capsys: pytest.CaptureFixture[str]) -> None:
    figures = _ha_figures(sqlite=0.2, postgres=0.2, failover_s=1)
    assert hatable.replicas_ratio(figures, "cpu", "shards_3") is None  # not measured: no control to print
    shards = {**figures["replicas_3"], "cpu_s": [0.06, 0.06, 0.06], "transactions": 38}
    figures = {**figures, "shards_3": shards}
    assert hatable.replicas_ratio(figures, "cpu", "shards_3") == 1.8  # 0.18 CPU s against one replica's 0.1
    hatable.print_shards(figures)
    out = capsys.readouterr().out
    assert "(nothing shared: the control): 1.80×; 3 replicas ÷ 3 shards (what sharing costs): 1.11×" in out


def test_wake_ups_are_counted_from_proc_summed_over_rounds_and_compared_between_setups() -> None:
    before = replicas.switches(os.getpid())
    subprocess.run(["true"], check=True)  # waiting for a child: this process sleeps and is woken at least once
    after = replicas.switches(os.getpid())
    assert after[0] > before[0] and after[1] >= before[1]

    def window(switched: int, moved: int) -> dict[str, Any]:
        return {
            "seconds": 1.0, "cpu_s": [0.1], "requests": 1, "requests_by_kind": None, "bytes": 1, "changed_jobs": 1,
            "notifications": 1, "transactions": 1, "takeovers": 0, "context_switches": switched, "migrations": moved,
        }  # fmt: skip

    one, three = replicas.pooled([window(60, 1), window(40, 2)]), replicas.pooled([window(150, 9), window(100, 11)])
    assert (one["context_switches"], one["migrations"], three["context_switches"]) == (100, 3, 250)
    assert hatable.switches_ratios({"replicas_1": one, "replicas_3": three}) == (2.5, 3, 20)
    assert hatable.switches_ratios({"replicas_1": {}, "replicas_3": three}) is None  # an older file: not counted


def test_alternated_rounds_are_judged_on_their_totals_and_each_round_keeps_its_own_ratio() -> None:
    def window(cpu_s: list[float], transactions: int | None) -> dict[str, Any]:
        return {
            "seconds": 10.0,
            "cpu_s": cpu_s,
            "requests": 5,
            "requests_by_kind": {hatable.JOB_GET: 4, "GET /v1/benchmark_jobs": 1},
            "bytes": 7,
            "changed_jobs": 3,
            "notifications": 4,
            "transactions": transactions,
            "takeovers": 2,
        }

    slow = {"replicas_1": window([1.0], 30), "replicas_3": window([0.6, 0.5, 0.4], 33)}  # CPU 1.5×
    fast = {"replicas_1": window([3.0], 30), "replicas_3": window([1.0, 1.1, 0.9], 30)}  # CPU 1.0×
    assert [hatable.replicas_ratio(each, "cpu") for each in (slow, fast)] == [1.5, 1.0]
    three = replicas.pooled([slow["replicas_3"], fast["replicas_3"]])
    # each replica's CPU summed on its own; a job that changed in both windows counts in each
    assert three == {
        "seconds": 20.0,
        "cpu_s": [1.6, 1.6, 1.3],
        "requests": 10,
        "requests_by_kind": {hatable.JOB_GET: 8, "GET /v1/benchmark_jobs": 2},
        "bytes": 14,
        "changed_jobs": 6,
        "notifications": 8,
        "transactions": 63,
        "takeovers": 4,
        "context_switches": 0,  # windows of an older file, before they were counted
        "migrations": 0,
    }
    totals = {"replicas_1": replicas.pooled([slow["replicas_1"], fast["replicas_1"]]), "replicas_3": three}
    assert hatable.replicas_ratio(totals, "cpu") == 1.125  # 4.5 s over 4 s: not the mean of the rounds' ratios
    assert hatable.replicas_ratio(totals, "transactions") == 1.05
    assert hatable.polls_ratios(totals) == (1.0, 1.125)  # as many job polls: per poll as per changed job
    # the requests of a window by endpoint, the ids left out
    lines = ["GET /v1/benchmark_jobs/bmj_1", "GET /v1/benchmark_jobs?limit=5", "GET /v1/benchmark_jobs/bmj_2"]
    lines.append("GET /v1/benchmark_runs/bmr_1/scenario_runs?limit=5000")
    assert replicas.request_kinds(lines) == {
        "GET /v1/benchmark_jobs": 1,
        hatable.JOB_GET: 2,
        "GET /v1/benchmark_runs/{id}/scenario_runs": 1,
    }
    # a round whose transactions were not counted leaves the total uncounted, not smaller; so do its requests
    assert replicas.pooled([slow["replicas_1"], window([1.0], None)])["transactions"] is None
    unlogged = {**window([1.0], 30), "requests_by_kind": None}  # the simulator's log had rolled over
    assert replicas.pooled([slow["replicas_1"], unlogged])["requests_by_kind"] is None
    assert hatable.polls_ratios({"replicas_1": unlogged, "replicas_3": slow["replicas_3"]}) is None


def test_save_keeps_one_latest_file_per_kind_of_run() -> None:
    from benchmarks.__main__ import RESULTS_FOLDER, latest_path, main

    assert latest_path(["poll-large", "poll-many", "poll-small"]) == RESULTS_FOLDER / "results-poll-latest.json"
    assert latest_path(["poll-many"]) == RESULTS_FOLDER / "results-many-latest.json"
    assert latest_path(["ha"]) == RESULTS_FOLDER / "results-ha-latest.json"
    assert latest_path([]) == RESULTS_FOLDER / "results-all-latest.json"
    kept = sorted(path.name for path in RESULTS_FOLDER.glob("results-*.json"))
    assert kept and all(name.endswith("-latest.json") for name in kept)  # no file per commit: one per kind
    with pytest.raises(SystemExit) as refused:  # a tiny run must not replace measured figures
        main(["poll-many", "--quick", "--save"])
    assert refused.value.code == 2
