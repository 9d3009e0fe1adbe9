"""Markdown for pull requests and CI step summaries: API strings escaped for a table cell, the compact table per
agent, and `compare --format markdown` on the simulator's nightlies."""

from __future__ import annotations

import re

import pytest

from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, add_nightly
from watcher.cli.compare import compare_command
from watcher.cli.errors import EXIT_OK
from watcher.cli.main import build_parser
from watcher.cli.markdown import comparison_markdown, md_link, md_text
from watcher.core.clock import ManualClock
from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.diff.compare import compare_jobs
from watcher.simulator import Simulator

HOSTILE = "a|b `code` <img src=x onerror=alert(1)> *bold* [link](https://evil.example) &amp;\nsecond line"
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def test_api_text_renders_as_itself_on_one_line() -> None:
    assert md_text(HOSTILE) == (
        r"a\|b \`code\` &lt;img src=x onerror=alert(1)&gt; \*bold\* \[link\](https://evil.example) "
        r"&amp;amp; second line"
    )
    assert md_text("tab\tand\x1b[31mescape") == r"tab and \[31mescape"  # control characters are spaces
    assert md_link("fix (the) build", "https://platform.x/scenarios/a b/runs/(1)") == (
        "[fix (the) build](https://platform.x/scenarios/a%20b/runs/%281%29)"
    )
    assert md_link("no link", None) == "no link"


def _job(job_id: str, created_ms: int, passed: list[bool], *, agent: str, scenario: str) -> JobOutcomes:
    scenarios = tuple(
        ScenarioResult(
            scenario_definition_id=f"s{i:02d}",
            scenario_name=scenario if i == 0 else f"task-{i:02d}",
            state="COMPLETED",
            score=float(ok),
            scenario_run_id=f"scr_{job_id}_{i}",
        )
        for i, ok in enumerate(passed)
    )
    outcomes = AgentOutcomes(agent_name=agent, model_name="m|1", benchmark_run_id=f"bmr_{job_id}", scenarios=scenarios)
    return JobOutcomes(
        job_id=job_id, job_name=f"{job_id} | nightly", state="completed", create_time_ms=created_ms,
        benchmark="benchmark:b", agents=(outcomes,),
    )  # fmt: skip


def test_the_table_keeps_one_row_per_agent_whatever_the_names_hold() -> None:
    before = _job("j1", 1, [True] * 40, agent=HOSTILE, scenario=HOSTILE)
    after = _job("j2", 2, [False] * 12 + [True] * 28, agent=HOSTILE, scenario=HOSTILE)
    text = comparison_markdown("j2 | nightly", compare_jobs(after, before, dashboard_url="https://platform.x"))
    lines = text.splitlines()
    assert lines[0] == r"### j2 \| nightly vs j1 \| nightly"
    header = lines.index("| agent | score | Δ (95 % interval) | significant | regressions | fixes | flaky | infra |")
    row = lines[header + 2]
    assert len(_UNESCAPED_PIPE.findall(row)) == 9  # 8 cells: no pipe from a name splits one
    assert row.startswith(r"| a\|b \`code\` &lt;img") and r"(m\|1)" in row
    assert "| 1.000 → 0.700 | −0.300 (" in row and "| **yes** (p = " in row and "| 12 (12 new) | 0 | 0 | 0 |" in row
    assert "❌ significant drop: " in lines[2]
    assert "<img" not in text and "\nsecond line" not in text
    assert "<details><summary>Regressed (12)</summary>" in text
    assert "[a\\|b \\`code\\` &lt;img" in text and "](https://platform.x/scenarios/s00/runs/scr_j2_0) (new)" in text


async def test_compare_prints_markdown_for_a_pull_request(
    sim: Simulator, sim_url: str, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=2)
    current = add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS, days_ago=1)
    args = ["compare", "--base-url", sim_url, current.job_id, "--format", "markdown"]
    assert await compare_command(build_parser().parse_args(args)) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("### nightly-42 vs nightly-41\n\n⚠️ 3 regressed, no significant drop")
    assert (
        "| claude-code (claude-sonnet-4-6) | 0.833 → 0.708 | −0.125 (−0.417 … +0.167) | no (p = 0.625, adjusted 1) "
        "| 3 (3 new) | 1 | 0 | 0 |"
    ) in out
    assert "> ⚠️ claude-code (claude-sonnet-4-6): too few scenarios to detect a 5-point drop: 12 paired" in out
