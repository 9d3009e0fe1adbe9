"""Regressions against a baseline: the statistics against known values, the pure comparison, the baseline search
(store first, then the job list) and the `job.compared` event on the simulator's nightlies."""

from __future__ import annotations

import io
import json
import math
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
from watcher.core.failureclass import FailureClasses
from watcher.diff.compare import CompareRules, FlakyRule, NotComparable, compare_jobs, flaky_scenarios
from watcher.diff.outcomes import pick_baseline
from watcher.diff.stats import (
    connor_sample_size,
    holm_adjusted,
    mcnemar_exact,
    mcnemar_power,
    mcnemar_sample_size,
    paired_bootstrap,
)
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


def test_holm_adjusts_as_computed_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04: × 3, × 2, × 1 = 0.03, 0.06, 0.04 → made monotone: 0.03, 0.06, 0.06
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([0.02]) == [0.02]  # one test: nothing to adjust
    assert holm_adjusted([]) == []


def test_mcnemar_power_matches_the_sums_computed_by_hand() -> None:
    # ψ = δ = 0.3: every flip is a drop (π = 1); the test rejects from 6 flips all down (2/64 < 0.05, 2/32 is not),
    # so the power is P(Binomial(10, 0.3) >= 6)
    by_hand = sum(math.comb(10, d) * 0.3**d * 0.7 ** (10 - d) for d in range(6, 11))
    assert mcnemar_power(10, 0.3, 0.3) == pytest.approx(by_hand, rel=1e-12)
    # ψ = 0.75, δ = 0.25: a flip is a drop with π = (0.75 + 0.25) / 1.5 = 2/3; with 6, 7 or 8 flips the test
    # rejects only when all are drops (one rise already gives p >= 2 × 7/64), so the power is
    # Σ P(d flips) × (2/3)^d over d = 6..8
    by_hand = sum(math.comb(8, d) * 0.75**d * 0.25 ** (8 - d) * (2 / 3) ** d for d in range(6, 9))
    assert mcnemar_power(8, 0.25, 0.75) == pytest.approx(by_hand, rel=1e-12)
    assert mcnemar_power(0, 0.05, 0.1) == 0.0
    # Connor: (1.959964 × √0.1 + 0.841621 × √0.0975)² / 0.05² = 311.6 → 312; the exact test needs a little more
    assert connor_sample_size(0.05, 0.1) == 312
    needed = mcnemar_sample_size(0.05, 0.1)
    assert needed >= 312 and mcnemar_power(needed, 0.05, 0.1) >= 0.8 > mcnemar_power(312, 0.05, 0.1)
    # above 1,000 pairs the normal approximation takes over, within 2 points of the exact (more conservative) sum
    assert mcnemar_power(1001, 0.05, 0.3) == pytest.approx(mcnemar_power(1000, 0.05, 0.3), abs=0.02)


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


def test_no_comparison_is_made_over_0_paired_scenarios() -> None:
    baseline = _job("j1", 1, {"a": 1.0, "b": 1.0}, name="nightly-41")
    with pytest.raises(NotComparable, match=r"^cannot compare other with nightly-41: they share no scenario \(2 vs 2"):
        compare_jobs(_job("j2", 2, {"x": 1.0, "y": 0.0}, name="other"), baseline)
    stranger = _job("j3", 3, {"a": 1.0, "b": 0.0}, name="stranger")
    stranger = stranger.model_copy(update={"agents": (stranger.agents[0].model_copy(update={"agent_name": "codex"}),)})
    with pytest.raises(NotComparable, match=r"no agent \(name and model\) ran in both \(codex/m vs claude-code/m\)"):
        compare_jobs(stranger, baseline)
    # Two agents: the one sharing no scenario is not compared, the other is.
    mixed = _job("j4", 4, {"a": 0.0, "b": 1.0})
    elsewhere = stranger.agents[0].model_copy(update={"scenarios": _job("j", 0, {"z": 1.0}).agents[0].scenarios})
    both = baseline.model_copy(update={"agents": (*baseline.agents, elsewhere)})
    disjoint = elsewhere.model_copy(update={"scenarios": _job("j", 0, {"w": 1.0}).agents[0].scenarios})
    comparison = compare_jobs(mixed.model_copy(update={"agents": (*mixed.agents, disjoint)}), both)
    assert [a.agent_name for a in comparison.agents] == ["claude-code"] and comparison.agents[0].n_paired == 2
    assert comparison.unpaired_agents == ("codex/m (no scenario in common)",)


def test_a_large_drop_is_significant_and_a_small_one_is_not() -> None:
    ids = [f"s{i:02d}" for i in range(40)]
    baseline = _job("j1", 1, dict.fromkeys(ids, 1.0))
    big = compare_jobs(_job("j2", 2, {i: (0.0 if n < 12 else 1.0) for n, i in enumerate(ids)}), baseline)
    small = compare_jobs(_job("j3", 3, {i: (0.0 if n < 2 else 1.0) for n, i in enumerate(ids)}), baseline)
    assert big.agents[0].significant and big.agents[0].ci_high < 0 and big.agents[0].p_value < 0.001
    assert not small.agents[0].significant and small.agents[0].p_value == 0.5
    assert big.significant and big.n_regressions == 12


def test_flaky_scenarios_are_listed_apart_not_as_regressions() -> None:
    # "x" flips every night; "y" passed every night before and regresses tonight
    history = [_job(f"j{n}", n, {"x": float(n % 2), "y": 1.0}) for n in range(1, 6)]
    current = _job("j6", 6, {"x": 0.0, "y": 0.0})
    baseline = history[-1]  # x passed (n=5), y passed
    assert flaky_scenarios(history, ("claude-code", "m")) == {"x"}
    agent = compare_jobs(current, baseline, history).agents[0]
    assert [(r.scenario_definition_id, r.new) for r in agent.regressions] == [("y", True)]
    assert [r.scenario_definition_id for r in agent.flaky] == ["x"]
    strict = CompareRules(flaky=FlakyRule(window=5, min_flips=5))  # x flipped 4 times over the 5 jobs before
    regressions = compare_jobs(current, baseline, history, rules=strict).agents[0].regressions
    assert [(r.scenario_definition_id, r.new) for r in regressions] == [("x", False), ("y", True)]  # x: a relapse


def test_setup_failures_are_listed_apart_and_count_only_when_asked() -> None:
    baseline = _job("j1", 1, {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": 1.0})
    current = _job("j2", 2, {"a": "FAILED", "b": "FAILED", "c": "FAILED", "d": 1.0, "e": 1.0})
    # a: failed before its scenario run existed; b: a setup exception type; c: the agent's own failure
    agents = current.agents[0].model_copy(
        update={
            "scenarios": tuple(
                s.model_copy(update={"scenario_run_id": None})
                if s.scenario_definition_id == "a"
                else s.model_copy(update={"exception_type": "DevboxSetupError"})
                if s.scenario_definition_id == "b"
                else s.model_copy(update={"exception_type": "NonZeroAgentExitCodeError"})
                if s.scenario_definition_id == "c"
                else s
                for s in current.agents[0].scenarios
            )
        }
    )
    current = current.model_copy(update={"agents": (agents,)})
    comparison = compare_jobs(current, baseline)
    agent = comparison.agents[0]
    assert [r.scenario_definition_id for r in agent.regressions] == ["c"]
    assert [r.scenario_definition_id for r in agent.infra] == ["a", "b"] and comparison.n_infra == 2
    assert (agent.n_paired, agent.baseline_score, agent.score) == (3, 1.0, 0.666667)  # over a, b left out
    counted = compare_jobs(current, baseline, rules=CompareRules(count_setup_failures=True)).agents[0]
    assert [r.scenario_definition_id for r in counted.regressions] == ["a", "b", "c"] and counted.infra == ()
    mine = CompareRules(classes=FailureClasses.extended({"setup": ["NonZeroAgentExitCodeError"]}))
    assert [r.scenario_definition_id for r in compare_jobs(current, baseline, rules=mine).agents[0].infra] == [
        "a",
        "b",
        "c",
    ]


def test_several_agents_are_judged_on_holm_adjusted_p_values() -> None:
    ids = [f"s{i:02d}" for i in range(20)]

    def two_agents(job_id: str, created_ms: int, down: int) -> JobOutcomes:
        job = _job(job_id, created_ms, {i: (0.0 if n < down else 1.0) for n, i in enumerate(ids)})
        codex = job.agents[0].model_copy(update={"agent_name": "codex", "benchmark_run_id": f"bmr_{job_id}_x"})
        return job.model_copy(update={"agents": (job.agents[0], codex)})

    # each agent lost 6 of 20 and gained none: alone, p = 2 / 2^6 = 0.03125 < 0.05 — significant; together the
    # smaller p-value is doubled (0.0625) and the other may not go below it: neither is significant after Holm
    comparison = compare_jobs(two_agents("j2", 2, 6), two_agents("j1", 1, 0))
    assert [(a.p_value, a.p_adjusted, a.significant) for a in comparison.agents] == [
        (0.03125, 0.0625, False),
        (0.03125, 0.0625, False),
    ]
    alone = compare_jobs(
        _job("j2", 2, {i: (0.0 if n < 6 else 1.0) for n, i in enumerate(ids)}), _job("j1", 1, dict.fromkeys(ids, 1.0))
    )
    assert (alone.agents[0].p_adjusted, alone.agents[0].significant) == (0.03125, True)
    assert comparison.agents[0].power_warning is not None and comparison.agents[0].power_warning.endswith(
        ", at α = 0.05 / 2 agents"
    )


def test_too_small_a_sample_says_so_in_words() -> None:
    few = [f"s{i:02d}" for i in range(12)]
    agent = compare_jobs(_job("j2", 2, dict.fromkeys(few, 1.0)), _job("j1", 1, dict.fromkeys(few, 1.0))).agents[0]
    # nothing flipped: the assumed discordance is the drop itself (ψ = 0.05); 12 pairs see under one flip on average
    needed = mcnemar_sample_size(0.05, 0.05)
    assert agent.power == pytest.approx(mcnemar_power(12, 0.05, 0.05), abs=1e-4)
    assert agent.power_warning == (
        f"too few scenarios to detect a 5-point drop: 12 paired, about {needed} needed for 80% power (now 0%)"
    )
    many = [f"s{i:03d}" for i in range(400)]
    enough = compare_jobs(_job("j2", 2, dict.fromkeys(many, 1.0)), _job("j1", 1, dict.fromkeys(many, 1.0)))
    assert enough.agents[0].power_warning is None and enough.agents[0].power >= 0.8
    ten_points = compare_jobs(
        _job("j2", 2, dict.fromkeys(few, 1.0)),
        _job("j1", 1, dict.fromkeys(few, 1.0)),
        rules=CompareRules(min_effect=0.1),
    )
    assert ten_points.agents[0].power_warning is not None
    assert ten_points.agents[0].power_warning.startswith("too few scenarios to detect a 10-point drop")


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
        assert event_line(event) == (
            "nightly-42 vs nightly-41: claude-code 0.83 → 0.71 (−0.12); codex 0.67 → 0.67 (+0.00), 3 regressions, "
            "1 fix; too few scenarios to detect a 5-point drop (claude-code, codex)"
        )
        assert event_from_json(event_to_json(event)) == event
        # both jobs' outcomes are kept: a second comparison needs no API call
        archive = OutcomeArchive(store)
        assert (await archive.load(current.job_id)) is not None
        assert (await archive.load(baseline.job_id)) is not None
        assert (await archive.load("bmj_unknown")) is None


async def test_a_nightly_sharing_no_scenario_with_its_baseline_is_not_compared_and_why_is_logged(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    agents = [SimAgent(name="claude-code", model_name="claude-sonnet-4-6")]
    current = add_nightly(sim, clock, "nightly-42", {}, days_ago=0, scenario_ids=["new_00", "new_01"], agents=agents)
    async with SQLiteStore(tmp_path / "state.db") as store, _client(sim_url, clock) as client:
        comparer = JobComparer(BaselineFinder(OutcomeArchive(store), client, BaselineSection()))
        events = await _poll_until_compared(JobTracker(store, comparer=comparer), client, clock, current.job_id)
    assert "job.finished" in [e.kind for e in events] and "job.compared" not in [e.kind for e in events]
    why = [r.getMessage() for r in caplog.records if "not compared" in r.getMessage()]
    assert why == [f"job {current.job_id} not compared with its baseline: cannot compare nightly-42 with nightly-41: "
                   "they share no scenario (2 vs 12 scenarios, none in common)"]  # fmt: skip


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


async def test_the_status_page_s_trend_window_is_ten_jobs_or_baseline_history(tmp_path: Path) -> None:
    nowhere = "http://127.0.0.1:9"  # the Service is started, never run: nothing is asked of these
    bare = write_config(tmp_path, nowhere, nowhere)
    async with Service(load_config(bare)).started() as service:
        assert service.trend_jobs() == 10
    (tmp_path / "few").mkdir()
    few = write_config(tmp_path / "few", nowhere, nowhere, rules="baseline: {history: 4, flaky_flips: 2}\n")
    async with Service(load_config(few)).started() as service:
        assert service.trend_jobs() == 10  # flakiness looks at 4 jobs; the chart still shows 10
    (tmp_path / "more").mkdir()
    more = write_config(tmp_path / "more", nowhere, nowhere, rules="baseline: {history: 30}\n")
    async with Service(load_config(more)).started() as service:
        assert service.trend_jobs() == 30


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
