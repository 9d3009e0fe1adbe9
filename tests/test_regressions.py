"""Regressions against a baseline: the statistics against known values, the pure comparison, the baseline search
(store first, then the job list) and the `job.compared` event on the simulator's nightlies."""

from __future__ import annotations

import io
import json
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import ServerFactory
from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, HOUR_MS, add_nightly, nightly_spec
from tests.running import write_config
from watcher.api.client import RequestLimits, RunloopClient
from watcher.api.poll import fetch_snapshot
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.cli.replay import replay
from watcher.core.clock import ManualClock
from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.core.eventlines import event_line
from watcher.core.events import Event, JobCompared, event_from_json, event_to_json
from watcher.diff.compare import FlakyRule, compare_jobs, flaky_scenarios
from watcher.diff.outcomes import pick_baseline
from watcher.diff.stats import mcnemar_exact, paired_bootstrap
from watcher.diff.trend import agent_trend, sparkline
from watcher.pipeline.archive import OutcomeArchive
from watcher.pipeline.baseline import BaselineFinder, BaselineSection
from watcher.pipeline.comparer import JobComparer
from watcher.pipeline.tracker import JobTracker
from watcher.simulator import SimAgent, SimJobSpec, Simulator
from watcher.store.sqlite import SQLiteStore
from watcher.web.trend_svg import trend_svg

# -- statistics against known values --------------------------------------------------------------------------------


def test_mcnemar_matches_the_binomial_computed_by_hand() -> None:
    # 8 down, 2 up: P(X <= 2 | n=10, 1/2) = (1 + 10 + 45) / 1024; two-sided doubles it
    assert mcnemar_exact(8, 2) == pytest.approx(112 / 1024)
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    assert mcnemar_exact(5, 5) == 1.0  # capped: a balanced split is no evidence at all
    assert mcnemar_exact(0, 0) == 1.0
    assert 0 < mcnemar_exact(300, 200) < 0.001  # big counts: exact integers, no overflow


def test_bootstrap_is_deterministic_and_degenerate_inputs_are_exact() -> None:
    before = [1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.0, 1.0]
    after = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    assert paired_bootstrap(before, after) == paired_bootstrap(list(before), list(after))
    low, high = paired_bootstrap(before, after)
    assert low <= (sum(after) - sum(before)) / len(after) <= high
    assert paired_bootstrap([1.0, 0.0], [1.0, 0.0]) == (0.0, 0.0)
    assert paired_bootstrap([], []) == (0.0, 0.0)


@pytest.mark.slow
def test_bootstrap_interval_covers_the_true_change_at_close_to_its_nominal_rate() -> None:
    # 200 seeded benchmarks of 30 scenarios; each scenario passes with its own chance p, 0.1 less after the change:
    # the true change of the mean score is -0.1. A 95 % interval should cover it about 95 % of the time.
    rng = random.Random(7)
    covered = 0
    trials = 200
    for _ in range(trials):
        chances = [rng.uniform(0.1, 1.0) for _ in range(30)]
        before = [float(rng.random() < p) for p in chances]
        after = [float(rng.random() < p - 0.1) for p in chances]
        low, high = paired_bootstrap(before, after, resamples=500)
        covered += low <= -0.1 <= high
    assert 0.90 <= covered / trials <= 0.99


# -- the pure comparison ---------------------------------------------------------------------------------------------


def _job(job_id: str, created_ms: int, results: dict[str, float | str], *, name: str | None = None) -> JobOutcomes:
    scenarios = tuple(
        ScenarioResult(
            scenario_definition_id=sid,
            scenario_name=f"name-{sid}",
            state="COMPLETED" if isinstance(value, float) else value,
            score=value if isinstance(value, float) else None,
            scenario_run_id=f"scr_{job_id}_{sid}",
        )
        for sid, value in sorted(results.items())
    )
    agent = AgentOutcomes(
        agent_name="claude-code", model_name="m", benchmark_run_id=f"bmr_{job_id}", scenarios=scenarios
    )
    return JobOutcomes(
        job_id=job_id,
        job_name=name or job_id,
        state="completed",
        create_time_ms=created_ms,
        benchmark="benchmark:b",
        agents=(agent,),
    )


def test_compare_lists_regressions_fixes_new_and_missing_with_links() -> None:
    baseline = _job("j1", 1, {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0, "gone": 1.0})
    current = _job("j2", 2, {"a": 1.0, "b": "FAILED", "c": 1.0, "d": 0.0, "fresh": 1.0})
    comparison = compare_jobs(current, baseline, dashboard_url="https://platform.example")
    agent = comparison.agents[0]
    assert [r.scenario_name for r in agent.regressions] == ["name-b"]
    assert agent.regressions[0].url == "https://platform.example/scenarios/b/runs/scr_j2_b"
    assert [r.scenario_definition_id for r in agent.fixes] == ["c"]
    assert agent.n_still_failing == 1
    assert [r.scenario_definition_id for r in agent.new] == ["fresh"]
    assert [r.scenario_definition_id for r in agent.missing] == ["gone"]
    assert (agent.n_paired, agent.baseline_score, agent.score, agent.delta) == (4, 0.5, 0.5, 0.0)
    assert agent.p_value == 1.0 and not agent.significant
    assert compare_jobs(current, baseline, dashboard_url="https://platform.example") == comparison  # pure


def test_a_large_drop_is_significant_and_a_small_one_is_not() -> None:
    ids = [f"s{i:02d}" for i in range(40)]
    baseline = _job("j1", 1, dict.fromkeys(ids, 1.0))
    big = compare_jobs(_job("j2", 2, {i: (0.0 if n < 12 else 1.0) for n, i in enumerate(ids)}), baseline)
    small = compare_jobs(_job("j3", 3, {i: (0.0 if n < 2 else 1.0) for n, i in enumerate(ids)}), baseline)
    assert big.agents[0].significant and big.agents[0].ci_high < 0 and big.agents[0].p_value < 0.001
    assert not small.agents[0].significant and small.agents[0].p_value == 0.5
    assert big.significant and big.n_regressions == 12


def test_flaky_scenarios_are_listed_apart_not_as_regressions() -> None:
    # "x" flips every night; "y" regresses for the first time tonight
    history = [_job(f"j{n}", n, {"x": float(n % 2), "y": 1.0}) for n in range(1, 6)]
    current = _job("j6", 6, {"x": 0.0, "y": 0.0})
    baseline = history[-1]  # x passed (n=5), y passed
    assert flaky_scenarios([*history, current], ("claude-code", "m"), FlakyRule(10, 3)) == {"x"}
    agent = compare_jobs(current, baseline, history, flaky=FlakyRule(window=10, min_flips=3)).agents[0]
    assert [r.scenario_definition_id for r in agent.regressions] == ["y"]
    assert [r.scenario_definition_id for r in agent.flaky] == ["x"]
    strict = compare_jobs(current, baseline, history, flaky=FlakyRule(window=10, min_flips=6)).agents[0]
    assert [r.scenario_definition_id for r in strict.regressions] == ["x", "y"]


def test_pick_baseline_takes_the_latest_earlier_completed_job_of_the_benchmark_matching_the_glob() -> None:
    current = _job("j5", 50, {"a": 1.0}, name="nightly-5")
    other_benchmark = _job("j4", 40, {"a": 1.0}, name="nightly-4").model_copy(update={"benchmark": "benchmark:z"})
    failed = _job("j3", 30, {"a": 1.0}, name="nightly-3").model_copy(update={"state": "failed"})
    adhoc = _job("j2b", 25, {"a": 1.0}, name="adhoc-2")
    nightly = _job("j2", 20, {"a": 1.0}, name="nightly-2")
    later = _job("j6", 60, {"a": 1.0}, name="nightly-6")
    candidates = [other_benchmark, failed, adhoc, nightly, later, current]
    assert pick_baseline(current, candidates, None) == adhoc
    assert pick_baseline(current, candidates, "nightly-*") == nightly
    assert pick_baseline(nightly, candidates, None) is None


def test_trend_marks_significant_drops_and_draws_a_sparkline() -> None:
    ids = [f"s{i:02d}" for i in range(30)]
    jobs = [
        _job("j1", 1, dict.fromkeys(ids, 1.0)),
        _job("j2", 2, dict.fromkeys(ids, 1.0)),
        _job("j3", 3, {i: (0.0 if n < 15 else 1.0) for n, i in enumerate(ids)}),
    ]
    points = agent_trend(jobs, ("claude-code", "m"))
    assert [(p.score, p.significant_drop) for p in points] == [(1.0, False), (1.0, False), (0.5, True)]
    assert sparkline([p.score for p in points]) == "██▅"


# -- on the simulator: the tracker compares a nightly that completes ------------------------------------------------


def _client(url: str, clock: ManualClock) -> RunloopClient:
    return RunloopClient(base_url=url, api_key="k", clock=clock, limits=RequestLimits(max_per_s=None))


async def _poll_until_compared(
    tracker: JobTracker, client: RunloopClient, clock: ManualClock, job_id: str
) -> list[Event]:
    seen: list[Event] = []
    for _ in range(60):
        observation = await tracker.observe(await fetch_snapshot(client, job_id, clock, scenario_runs=False))
        seen.extend(observation.events)
        if observation.memory is not None and observation.memory.resting:
            return seen
        clock.advance(60_000)
    raise AssertionError("the job never came to rest")


async def test_a_completing_nightly_is_compared_with_the_last_one(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    add_nightly(sim, clock, "nightly-40", BASELINE_RESULTS | {"scn_00": 0.0}, days_ago=2)
    baseline = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    add_nightly(sim, clock, "adhoc-41b", CURRENT_RESULTS, days_ago=0.5, benchmark_id="bm_other")
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        finder = BaselineFinder(OutcomeArchive(store), client, BaselineSection(), dashboard_url="https://platform.x")
        tracker = JobTracker(store, comparer=JobComparer(finder))
        events = await _poll_until_compared(tracker, client, clock, current.job_id)
        compared = [e for e in events if isinstance(e, JobCompared)]
        assert len(compared) == 1
        event = compared[0]
        assert (event.baseline_job_id, event.baseline_job_name) == (baseline.job_id, "nightly-41")
        claude, codex = event.agents
        assert [r.scenario_definition_id for r in claude.regressions] == ["scn_00", "scn_01", "scn_02"]
        assert claude.regressions[0].scenario_name == "fix-broken-makefile-000"
        assert claude.regressions[0].url is not None and claude.regressions[0].url.startswith("https://platform.x/")
        assert [r.scenario_definition_id for r in claude.fixes] == ["scn_10"]
        assert claude.n_still_failing == 1
        assert (claude.baseline_score, claude.score) == (round(10 / 12, 6), round(8.5 / 12, 6))
        assert codex.delta == 0.0 and not codex.regressions and not codex.significant
        assert event.n_regressions == 3 and event.n_fixes == 1
        assert event_line(event).startswith("nightly-42 vs nightly-41: claude-code 0.83 → 0.71 (−0.12)")
        assert event_line(event).endswith("3 regressions, 1 fix")
        assert event_from_json(event_to_json(event)) == event
        # both jobs' outcomes are kept: a second comparison needs no API call
        archive = OutcomeArchive(store)
        assert (await archive.load(current.job_id)) is not None
        assert (await archive.load(baseline.job_id)) is not None
        assert (await archive.load("bmj_unknown")) is None


async def test_a_nightly_seen_finished_is_kept_not_compared_and_serves_as_baseline(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    before = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        settings = BaselineSection(search_api=False)  # the store alone must do
        tracker = JobTracker(store, comparer=JobComparer(BaselineFinder(OutcomeArchive(store), client, settings)))
        first = await tracker.observe(await fetch_snapshot(client, before.job_id, clock, scenario_runs=False))
        assert [e.kind for e in first.events] == ["job.discovered"]
        events = await _poll_until_compared(tracker, client, clock, current.job_id)
        assert [e.baseline_job_id for e in events if isinstance(e, JobCompared)] == [before.job_id]
        assert sim.requests_served > 0 and not any("benchmark_jobs?" in line for line in sim.request_log)


async def test_the_job_list_is_read_only_as_far_as_needed(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path
) -> None:
    for n in range(30):  # old nightlies, then the baseline, then many unrelated jobs
        add_nightly(sim, clock, f"old-{n}", BASELINE_RESULTS, days_ago=3 + n / 100)
    baseline = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    for n in range(5):
        add_nightly(sim, clock, f"other-{n}", BASELINE_RESULTS, days_ago=0.5, benchmark_id="bm_other")
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    clock.advance(2 * HOUR_MS)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        finder = BaselineFinder(OutcomeArchive(store), client, BaselineSection(max_scan=10))
        job = await client.get_job(current.job_id)
        compared = await finder.compare(await finder.keep(job))
        assert compared.baseline.job_id == baseline.job_id
        listed = [line for line in sim.request_log if "benchmark_jobs?" in line]
        assert len(listed) == 1  # one page of 10: current, five others, the baseline
        kept = await OutcomeArchive(store).comparable(compared.current.benchmark)
        assert [k.job_name for k in kept] == ["nightly-41", "nightly-42"]
        archive = OutcomeArchive(store)
        assert await archive.benchmarks() == ["benchmark:bm_nightly"]
        trends = await archive.trends("benchmark:bm_nightly")
        claude = trends[("claude-code", "claude-sonnet-4-6")]
        assert [(p.job_name, p.score) for p in claude] == [
            ("nightly-41", round(10 / 12, 6)),
            ("nightly-42", round(8.5 / 12, 6)),
        ]


def test_the_trend_svg_marks_drops_and_escapes_job_names() -> None:
    ids = [f"s{i:02d}" for i in range(30)]
    jobs = [
        _job("j1", 1, dict.fromkeys(ids, 1.0), name="nightly-<1>"),
        _job("j2", 2, {i: (0.0 if n < 15 else 1.0) for n, i in enumerate(ids)}, name="nightly-2"),
    ]
    svg = trend_svg(agent_trend(jobs, ("claude-code", "m")), title='claude-code "m"')
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg") and "<1>" not in svg and "nightly-&lt;1&gt;" in svg
    assert svg.count('class="drop"') == 1 and svg.count('class="point"') == 1
    assert "no comparable jobs yet" in trend_svg([], title="x")


async def test_the_page_s_benchmarks_are_the_most_recently_run_first_and_bounded(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "state.db") as store:
        archive = OutcomeArchive(store)
        for job_id, created_ms, benchmark in [("a1", 1, "b:a"), ("c1", 2, "b:c"), ("b1", 3, "b:b"), ("a2", 4, "b:a")]:
            await archive.keep(_job(job_id, created_ms, {"s": 1.0}).model_copy(update={"benchmark": benchmark}))
        assert await archive.recent_benchmarks(10) == ["b:a", "b:b", "b:c"]
        assert await archive.recent_benchmarks(2) == ["b:a", "b:b"]


async def test_the_status_page_s_trend_window_is_baseline_history(tmp_path: Path) -> None:
    nowhere = "http://127.0.0.1:9"  # the Service is started, never run: nothing is asked of these
    bare = write_config(tmp_path, nowhere, nowhere)
    async with Service(load_config(bare)).started() as service:
        assert service.trend_jobs() == 10  # BaselineSection's default
    (tmp_path / "more").mkdir()
    configured = write_config(tmp_path / "more", nowhere, nowhere, rules="baseline: {history: 4, flaky_flips: 2}\n")
    async with Service(load_config(configured)).started() as service:
        assert service.trend_jobs() == 4


async def test_a_dry_run_replay_compares_with_jobs_replayed_before(
    sim: Simulator, clock: ManualClock, tmp_path: Path
) -> None:
    baseline = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    lines = [{"at_ms": clock.now_ms(), "job": sim.job_view(baseline.job_id)}]
    for _ in range(40):
        lines.append({"at_ms": clock.now_ms(), "job": sim.job_view(current.job_id)})
        clock.advance(60_000)
    recording = tmp_path / "snapshots.jsonl"
    recording.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config_path = tmp_path / "benchwatch.yaml"
    config_path.write_text(
        "baseline: {}\nnotifiers:\n  out: {type: console}\n"
        "rules:\n  - {name: vs-baseline, on: job.compared, notify: out}\n"
    )
    out = io.StringIO()
    await replay(recording, out, config=load_config(config_path, {}))
    (notification,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert notification["title"].startswith("nightly-42 vs nightly-41: claude-code 0.83 → 0.71")
    assert notification["events"][0]["agents"][0]["regressions"][0]["scenario_definition_id"] == "scn_00"


def test_chosen_results_must_name_scenarios_the_job_runs() -> None:
    with pytest.raises(ValueError, match=r"results for unknown scenario ids \['scn_typo'\]"):
        nightly_spec("n", BASELINE_RESULTS | {"scn_typo": 1.0})
    with pytest.raises(ValueError, match="need scenario_ids"):
        SimJobSpec(agents=[SimAgent(name="a", results={"x": 1.0})])
    with pytest.raises(ValueError, match="a score must be between 0 and 1"):
        SimAgent(name="a", results={"x": 1.5})


async def test_a_listed_job_without_scenario_results_is_fetched_whole_once(
    sim: Simulator, clock: ManualClock, tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    baseline = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0.5)
    views = {plan.job_id: sim.job_view(plan.job_id) for plan in (current, baseline)}  # newest first
    fetched: list[str] = []

    async def listing(request: web.Request) -> web.Response:
        abridged = [
            view | {"benchmark_outcomes": [o | {"scenario_outcomes": None} for o in view["benchmark_outcomes"]]}
            for view in views.values()
        ]
        return web.json_response({"jobs": abridged, "has_more": False})

    async def one(request: web.Request) -> web.Response:
        fetched.append(request.match_info["id"])
        return web.json_response(views[request.match_info["id"]])

    app = web.Application()
    app.router.add_get("/v1/benchmark_jobs", listing)
    app.router.add_get("/v1/benchmark_jobs/{id}", one)
    server = await aiohttp_server(app)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(str(server.make_url("")), clock) as client:
        finder = BaselineFinder(OutcomeArchive(store), client)
        compared = await finder.compare(await finder.outcomes(current.job_id))
        assert compared.baseline.job_id == baseline.job_id and fetched == [current.job_id, baseline.job_id]
        assert compared.comparison.n_regressions == 3
        await finder.compare(await finder.outcomes(current.job_id))
        assert fetched == [current.job_id, baseline.job_id]  # kept: not fetched again
