"""`benchwatch wait --baseline`: compare when the job ends, exit 3 when a bound is missed, JUnit marks regressions."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FakeSleep
from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, SCENARIOS, add_nightly
from watcher.api.client import RequestLimits, RunloopClient
from watcher.cli.errors import UsageError
from watcher.cli.main import build_parser
from watcher.cli.markdown import md_text
from watcher.cli.wait.defaults import EXIT_OK, EXIT_THRESHOLD_MISSED, EXIT_UNKNOWN
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import BaselineBounds, WaitOptions, WaitResult, options_from_args
from watcher.cli.wait.views import JsonView
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, Simulator


async def _wait(url: str, sleep: FakeSleep, job_id: str, **bounds: Any) -> tuple[WaitResult, str, str]:
    out, err = io.StringIO(), io.StringIO()
    junit = bounds.pop("junit", None)
    markdown = bounds.pop("summary_markdown", None)
    step_summary = bounds.pop("step_summary", None)
    options = WaitOptions(
        job_id=job_id,
        interval_ms=60_000,
        baseline=BaselineBounds(**bounds),
        junit_path=junit,
        summary_markdown_path=markdown,
        step_summary_path=step_summary,
    )
    limits = RequestLimits(max_per_s=None)
    async with RunloopClient(base_url=url, api_key="k", sleep=sleep, clock=sleep.clock, limits=limits) as client:
        result = await run_wait(client, options, JsonView(out, err), clock=sleep.clock, sleep=sleep)
    return result, out.getvalue(), err.getvalue()


async def test_too_many_regressions_exit_3_and_junit_marks_them(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    job = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    junit = tmp_path / "junit.xml"
    result, out, _ = await _wait(sim_url, fake_sleep, job.job_id, baseline="previous", max_regressions=2, junit=junit)
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    assert "3 regressions vs nightly-41 > max-regressions 2" in result.reason
    compared = [json.loads(line) for line in out.splitlines() if '"job.compared"' in line]
    assert len(compared) == 1 and compared[0]["n_regressions"] == 3
    root = ET.parse(junit).getroot()
    claude = next(suite for suite in root.iter("testsuite") if suite.get("name") == "claude-code")
    marked = sorted(
        case.get("name") or ""
        for case in claude.iter("testcase")
        if case.find("failure[@type='regression']") is not None
    )
    assert marked == ["configure-nginx-tls-001", "fix-broken-makefile-000", "sqlite-migration-002"]
    verdict = next(case for case in root.iter("testcase") if (case.get("name") or "").startswith("vs baseline"))
    assert verdict.get("name") == "vs baseline nightly-41" and verdict.find("failure") is not None


async def test_bounds_that_hold_exit_0_and_a_first_nightly_only_warns(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    first = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    job = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=0)
    result, _, _ = await _wait(sim_url, fake_sleep, job.job_id, baseline="previous", max_regressions=3)
    assert result.exit_code == EXIT_OK and result.comparison is not None
    result, _, err = await _wait(sim_url, fake_sleep, first.job_id, baseline="previous", max_regressions=0)
    assert result.exit_code == EXIT_OK and result.comparison is None
    assert "no baseline to compare with" in err


async def test_a_significant_drop_fails_and_an_explicit_baseline_is_used(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    good = add_nightly(sim, clock, "nightly-40", BASELINE_RESULTS, days_ago=2)
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS | {"scn_00": 0.0}, days_ago=1)
    dropped = BASELINE_RESULTS | dict.fromkeys(SCENARIOS[:8], "failed")
    job = add_nightly(sim, clock, "nightly-42", dropped, days_ago=0.01)
    result, _, _ = await _wait(sim_url, fake_sleep, job.job_id, baseline=good.job_id, fail_on_significant_drop=True)
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    assert result.comparison is not None and result.comparison.baseline_job_id == good.job_id
    assert "claude-code dropped significantly vs nightly-40" in result.reason


async def test_an_unknown_baseline_job_exits_4_at_once(sim: Simulator, sim_url: str, fake_sleep: FakeSleep) -> None:
    job = sim.add_job()
    result, _, _ = await _wait(sim_url, fake_sleep, job.job_id, baseline="bmj_nope")
    assert result.exit_code == EXIT_UNKNOWN and fake_sleep.delays == []


async def test_a_baseline_sharing_no_scenario_judges_nothing(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep
) -> None:
    """Never a verdict over 0 paired scenarios: the baseline named exits 4 saying why; `previous` only warns."""
    before = add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    claude = [SimAgent(name="claude-code", model_name="claude-sonnet-4-6")]
    job = add_nightly(sim, clock, "nightly-42", {}, days_ago=0, scenario_ids=["new_00"], agents=claude)
    result, out, _ = await _wait(sim_url, fake_sleep, job.job_id, baseline=before.job_id, max_regressions=0)
    why = "cannot compare nightly-42 with nightly-41: they share no scenario (1 vs 12 scenarios, none in common)"
    assert (result.exit_code, result.reason, result.comparison) == (EXIT_UNKNOWN, why, None)
    assert '"job.compared"' not in out
    result, _, err = await _wait(sim_url, fake_sleep, job.job_id, baseline="previous", max_regressions=0)
    assert result.exit_code == EXIT_OK and result.comparison is None
    assert f"not compared with its baseline: {why}" in err


def test_bounds_need_a_baseline() -> None:
    args = build_parser().parse_args(["wait", "bmj_1", "--max-regressions", "2"])
    with pytest.raises(UsageError, match="need --baseline"):
        options_from_args(args)
    args = build_parser().parse_args(["wait", "bmj_1", "--baseline", "previous", "--fail-on-significant-drop"])
    assert options_from_args(args).baseline == BaselineBounds("previous", None, True)


async def test_the_summary_as_markdown_goes_to_the_file_and_is_appended_to_the_step_summary(
    sim: Simulator, sim_url: str, clock: ManualClock, fake_sleep: FakeSleep, tmp_path: Path
) -> None:
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    setup_failed = CURRENT_RESULTS | {"scn_05": "setup"}
    job = add_nightly(sim, clock, "nightly-42", setup_failed, days_ago=0)
    markdown, step_summary = tmp_path / "summary.md", tmp_path / "step-summary.md"
    step_summary.write_text("## Earlier step\n")
    result, _, _ = await _wait(
        sim_url,
        fake_sleep,
        job.job_id,
        baseline="previous",
        max_regressions=2,
        summary_markdown=markdown,
        step_summary=step_summary,
    )
    assert result.exit_code == EXIT_THRESHOLD_MISSED
    text = markdown.read_text()
    assert step_summary.read_text() == "## Earlier step\n\n" + text  # appended, what was there kept
    lines = text.splitlines()
    assert lines[0] == "### ❌ nightly-42: completed"
    assert lines[2] == f"**exit 3**: {md_text(result.reason)}"
    assert "- missed: 3 regressions vs nightly-41 &gt; max-regressions 2" in lines  # renders as >
    claude_row = next(line for line in lines if line.startswith("| [claude-code]("))
    # the API's average over completed scenarios; 7 passed of 12 judged; failed: scn_00, scn_11 and scn_05 (setup)
    assert claude_row.endswith("/runs/bmr_P29XA9PYYRDA64GB) | claude-sonnet-4-6 | 0.938 | 58% | 7 | 3 | 1 | 15m |")
    assert "Failures: 1 setup, 1 timeout, 2 agent — " in text and "DevboxSetupError ×1 (setup)" in text
    assert "#### nightly-42 vs nightly-41" in lines
    # scn_05 failed in setup tonight: not a regression of the agent, listed apart
    assert "| 3 (3 new) | 1 | 0 | 1 |" in text
    assert "<details><summary>Failed in setup (not counted) (1)</summary>" in text


def test_github_step_summary_comes_from_the_environment(tmp_path: Path) -> None:
    args = build_parser().parse_args(["wait", "bmj_1", "--summary-markdown", str(tmp_path / "s.md")])
    options = options_from_args(args, environ={"GITHUB_STEP_SUMMARY": str(tmp_path / "step.md")})
    assert (options.summary_markdown_path, options.step_summary_path) == (tmp_path / "s.md", tmp_path / "step.md")
    assert options_from_args(args, environ={}).step_summary_path is None
    missing = build_parser().parse_args(["wait", "bmj_1", "--summary-markdown", str(tmp_path / "nope" / "s.md")])
    with pytest.raises(UsageError, match=r"--summary-markdown: the folder .* does not exist"):
        options_from_args(missing, environ={})
