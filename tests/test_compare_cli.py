"""`benchwatch compare` against the simulator's nightlies: the table, --json, --history, explicit baselines, exit 4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, SCENARIOS, add_nightly
from watcher.api.errors import NotFoundError
from watcher.cli.check import check
from watcher.cli.compare import compare_command
from watcher.cli.errors import EXIT_API, EXIT_OK
from watcher.cli.main import build_parser
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, Simulator


async def _run(url: str, *args: str) -> int:
    return await compare_command(build_parser().parse_args(["compare", "--base-url", url, *args]))


DROPPED = dict.fromkeys(SCENARIOS[3:10], "failed")  # nightly-40 lost seven scenarios, nightly-41 got them back


def _nightlies(sim: Simulator, clock: ManualClock) -> dict[str, str]:
    jobs = {
        "nightly-39": add_nightly(sim, clock, "nightly-39", BASELINE_RESULTS, days_ago=4),
        "nightly-40": add_nightly(sim, clock, "nightly-40", BASELINE_RESULTS | DROPPED, days_ago=3),
        "nightly-41": add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=2),
        "nightly-42": add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=1),
    }
    return {name: plan.job_id for name, plan in jobs.items()}


async def test_json_names_the_regressed_and_fixed_scenarios(
    sim: Simulator, sim_url: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _nightlies(sim, clock)
    assert await _run(sim_url, ids["nightly-42"], "--json", "--history", "4") == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert (out["job_id"], out["baseline_job_id"]) == (ids["nightly-42"], ids["nightly-41"])
    claude = out["agents"][0]
    assert claude["agent_name"] == "claude-code" and claude["significant"] is False
    assert claude["regressions"] == ["fix-broken-makefile-000", "configure-nginx-tls-001", "sqlite-migration-002"]
    assert claude["fixes"] == ["terraform-drift-010"]
    # the seven nightly-40 lost and nightly-41 got back flipped within the recent jobs: flaky, not judged
    assert claude["flaky"] == [
        "train-tiny-gpt2-003",
        "rust-borrow-fix-004",
        "k8s-helm-upgrade-005",
        "parse-pcap-flows-006",
        "django-n-plus-one-007",
        "git-bisect-regression-008",
        "cuda-oom-debug-009",
    ]
    assert claude["new_regressions"] == claude["regressions"]  # each passed in nightly-39, -40 and -41
    assert out["history_jobs"] == ["nightly-39", "nightly-40", "nightly-41"]
    rows = {row["scenario_definition_id"]: row for row in claude["scenarios"]}
    assert rows["scn_00"] == {
        "scenario_definition_id": "scn_00",
        "scenario_name": "fix-broken-makefile-000",
        "baseline": "pass",
        "now": "fail",
        "recent": ["pass", "pass", "pass"],
        "verdict": "regression",
        "new_regression": True,
    }
    assert (rows["scn_03"]["recent"], rows["scn_03"]["verdict"]) == (["pass", "fail", "pass"], "flaky")
    assert (rows["scn_11"]["recent"], rows["scn_11"]["verdict"]) == (["fail", "fail", "fail"], "unchanged")
    assert claude["delta"] == pytest.approx(8.5 / 12 - 10 / 12, abs=1e-6)
    # 3 down and 1 up: p = 2 × (1 + 4) / 16 = 0.625; Holm over two agents doubles the smaller p-value: 1.25 → 1
    assert (claude["p_value"], claude["p_adjusted"]) == (0.625, 1.0)
    assert claude["power_warning"].startswith("too few scenarios to detect a 5-point drop: 12 paired")
    history = claude["history"]
    assert [point["job_name"] for point in history] == ["nightly-39", "nightly-40", "nightly-41", "nightly-42"]
    assert [point["significant_drop"] for point in history] == [False, True, False, False]
    assert history[1]["score"] == 0.25 and history[1]["pass_rate"] == 0.25


async def test_the_table_shows_numbers_links_and_the_trend(
    sim: Simulator, sim_url: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _nightlies(sim, clock)
    assert await _run(sim_url, ids["nightly-42"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("nightly-42 vs nightly-41  (benchmark:bm_nightly)")
    assert "claude-code (claude-sonnet-4-6)" in out and "0.833 → 0.708" in out and "not significant" in out
    assert f"  regressed (3)\n    - fix-broken-makefile-000  {sim_url}/scenarios/scn_00/runs/scr_" in out
    assert "  trend      ▇▃▇▆  score over the last 4 jobs\n              ↓  significant drop" in out


async def test_an_explicit_baseline_and_a_store_that_keeps_what_was_fetched(
    sim: Simulator, sim_url: str, clock: ManualClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _nightlies(sim, clock)
    state = str(tmp_path / "state.db")
    assert await _run(sim_url, ids["nightly-41"], ids["nightly-40"], "--json", "--state", state) == EXIT_OK
    out = json.loads(capsys.readouterr().out)
    assert out["baseline_job_id"] == ids["nightly-40"] and out["agents"][0]["significant"] is True
    # the seven came back after one bad night: they flipped within the recent jobs (39 passed, 40 failed), so they
    # are flaky, not fixes — the statistics still count them, and the rise is significant
    assert out["agents"][0]["fixes"] == [] and len(out["agents"][0]["flaky"]) == 7
    assert "history" not in out["agents"][0]
    requests = len(sim.request_log)
    assert await _run(sim_url, ids["nightly-41"], ids["nightly-40"], "--json", "--state", state) == EXIT_OK
    fetched_again = [line for line in list(sim.request_log)[requests:] if "/v1/benchmark_jobs/" in line]
    assert fetched_again == []  # both jobs' outcomes came from the store


async def test_exit_4_without_a_baseline_and_not_found_raises_the_api_error(
    sim: Simulator, sim_url: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _nightlies(sim, clock)
    assert await _run(sim_url, ids["nightly-39"]) == EXIT_API
    assert "has no baseline" in capsys.readouterr().err
    with pytest.raises(NotFoundError):  # main() turns it into one line and exit 4 (tests/test_cli.py)
        await _run(sim_url, "bmj_nope")


async def test_two_jobs_sharing_no_scenario_or_no_agent_exit_4_with_one_line(
    sim: Simulator, sim_url: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = _nightlies(sim, clock)
    claude = [SimAgent(name="claude-code", model_name="claude-sonnet-4-6")]
    other = add_nightly(sim, clock, "other", {}, days_ago=0.5, scenario_ids=["x_00", "x_01"], agents=claude)
    stranger = add_nightly(sim, clock, "stranger", {}, days_ago=0.4, agents=[SimAgent(name="aider")])
    capsys.readouterr()
    assert await _run(sim_url, other.job_id, ids["nightly-41"], "--json") == EXIT_API
    out, err = capsys.readouterr()
    assert out == "" and err == (
        "benchwatch: cannot compare other with nightly-41: they share no scenario (2 vs 12 scenarios, none in common)\n"
    )
    assert await _run(sim_url, stranger.job_id, ids["nightly-41"]) == EXIT_API
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert "cannot compare stranger with nightly-41: no agent (name and model) ran in both (aider vs" in err


async def test_check_warns_when_rules_wait_for_comparisons_nothing_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text("notifiers:\n  out: {type: console}\nrules:\n  - {name: r, on: job.compared, notify: out}\n")
    assert await check(build_parser().parse_args(["check", str(config)])) == 0
    assert "note: rules on job.compared never fire without a baseline: section" in capsys.readouterr().out
    config.write_text(config.read_text() + "baseline: {name: 'nightly-*'}\n")
    assert await check(build_parser().parse_args(["check", str(config)])) == 0
    assert "baseline: each completed job vs the last earlier completed job of its benchmark named 'nightly-*'" in (
        capsys.readouterr().out
    )
