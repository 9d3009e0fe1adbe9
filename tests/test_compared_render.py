"""`job.compared` as every notifier shows it: Slack's "vs baseline" section, the email parts, the webhook body,
the default title — with API strings escaped for where they land."""

from __future__ import annotations

import json
from pathlib import Path

from notifiers import discord, teams
from notifiers.email_render import render_html, render_text
from notifiers.pagerduty import custom_details
from notifiers.slack_blocks import message_blocks
from notifiers.webhook import notification_json
from rules.engine import Router, RuleState
from rules.expr import compile_expression
from rules.match import compile_matcher
from rules.templates import default_title
from watcher.app.config import load_config
from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.core.events import JobCompared, event_id
from watcher.core.notification import Notification
from watcher.diff.compare import compare_jobs

EVIL = "<!channel> & <script>alert(1)</script>"


def _job(job_id: str, name: str, results: dict[str, float | str]) -> JobOutcomes:
    scenarios = tuple(
        ScenarioResult(
            scenario_definition_id=sid,
            scenario_name=EVIL if sid == "s00" else f"task-{sid}",
            state="COMPLETED" if isinstance(value, float) else value,
            score=value if isinstance(value, float) else None,
            scenario_run_id=f"scr_{job_id}_{sid}",
        )
        for sid, value in sorted(results.items())
    )
    agent = AgentOutcomes(
        agent_name="claude-code", model_name="sonnet", benchmark_run_id="bmr_" + job_id, scenarios=scenarios
    )
    return JobOutcomes(
        job_id=job_id, job_name=name, state="completed", create_time_ms=1, benchmark="benchmark:b", agents=(agent,)
    )


def _notification() -> Notification:
    ids = [f"s{i:02d}" for i in range(30)]
    baseline = _job("bmj_41", "nightly-41", dict.fromkeys(ids, 1.0) | {"s29": 0.0})
    current = _job("bmj_42", "nightly-42", {i: ("FAILED" if n < 12 else 1.0) for n, i in enumerate(ids)})
    comparison = compare_jobs(current, baseline, dashboard_url="https://platform.runloop.ai")
    event = JobCompared(
        id=event_id("bmj_42", "job.compared", "bmj_41", 5),
        job_id="bmj_42",
        job_name="nightly-42",
        at_ms=5,
        **dict(comparison),
    )
    title = default_title([event], None)
    return Notification(
        id="nt_1",
        rule="nightly-vs-baseline",
        notifier="slack",
        severity="warning",
        group_key="g",
        dedup_key="d",
        created_ms=5,
        title=title,
        text=title,
        events=(event,),
    )


def test_the_default_title_reads_like_a_person_would_say_it() -> None:
    assert _notification().title == (
        "nightly-42 vs nightly-41: claude-code 0.97 → 0.60 (−0.37, significant), 12 regressions, 1 fix"
    )


def test_slack_has_a_vs_baseline_section_with_escaped_linked_scenarios() -> None:
    sections = [b["text"]["text"] for b in message_blocks(_notification()) if b["type"] == "section"]
    (section,) = [text for text in sections if text.startswith("*vs baseline* nightly-41")]
    assert "regressed (12): <https://platform.runloop.ai/scenarios/s00/runs/scr_bmj_42_s00|" in section
    assert "&lt;!channel&gt; &amp; &lt;script&gt;" in section and "<!channel>" not in section
    assert "and 2 more" in section and "fixed (1)" in section
    assert "significant; 95 % interval" in section


def test_email_text_and_html_show_the_comparison_escaped() -> None:
    notification = _notification()
    text = render_text(notification)
    assert "vs baseline nightly-41" in text and "regressed (12):" in text
    assert "https://platform.runloop.ai/scenarios/s01/runs/scr_bmj_42_s01" in text
    html = render_html(notification)
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert '<a href="https://platform.runloop.ai/scenarios/s01/runs/scr_bmj_42_s01">task-s01</a>' in html


def test_the_webhook_body_carries_every_number_and_link() -> None:
    body = json.loads(json.dumps(notification_json(_notification())))
    (event,) = body["events"]
    agent = event["agents"][0]
    assert event["kind"] == "job.compared" and event["significant"] is True
    assert agent["delta"] < 0 and agent["ci_high"] < 0 and agent["p_value"] == 2 * (1 + 13) / 2**13  # 12 down, 1 up
    assert len(agent["regressions"]) == 12 and agent["regressions"][1]["url"].endswith("scr_bmj_42_s01")


def test_the_example_config_routes_it_to_slack_and_a_significant_drop_to_the_webhook() -> None:
    env = {"RUNLOOP_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-1"}
    loaded = load_config(Path(__file__).parent.parent / "examples" / "slack-nightly-vs-baseline.yaml", env)
    assert loaded.config.baseline is not None and loaded.config.baseline.name == "nightly-*"
    router = Router(loaded.config.rules, loaded.config.silences)
    drop = _notification().events[0]
    routed = router.route(RuleState(), [drop], None, 10)
    assert {(n.rule, n.notifier) for n in routed.notifications} == {
        ("nightly-vs-baseline", "research-slack"),
        ("nightly-significant-drop", "oncall-webhook"),
    }
    assert not routed.problems
    assert isinstance(drop, JobCompared)
    calm = drop.model_copy(update={"significant": False})
    routed = router.route(RuleState(), [calm], None, 10)
    assert [n.rule for n in routed.notifications] == ["nightly-vs-baseline"]


def test_the_issue_s_cel_expression_and_where_match_the_event() -> None:
    event = _notification().events[0].model_dump(mode="json")
    assert compile_expression("event.agents.exists(a, a.delta < -0.02)").evaluate(event, None)
    assert not compile_expression("event.agents.exists(a, a.delta < -0.5)").evaluate(event, None)
    assert compile_matcher("significant", True).matches(event, None)
    assert compile_matcher("n_regressions", {"ge": 12}).matches(event, None)


def test_pagerduty_details_carry_it() -> None:
    details = custom_details(_notification())
    (compared,) = details["vs_baseline"]
    assert compared["baseline_job_name"] == "nightly-41" and compared["significant"] is True
    agent = compared["agents"][0]
    assert agent["n_regressions"] == 12 and len(agent["regressions"]) == 10
    assert agent["change"].startswith("claude-code (sonnet) 0.967 → 0.600 (−0.367, significant; 95 % interval")


def test_discord_and_teams_show_it_escaped_with_links() -> None:
    notification = _notification()
    fields = discord.embed(notification)["fields"]
    (field,) = [f for f in fields if f["name"] == "vs baseline nightly-41: claude-code"]
    assert "regressed (12): [\\<!channel> & \\<script>alert\\(1\\)\\</script>](https://" in field["value"]
    assert "](https://platform.runloop.ai/scenarios/s01/runs/scr_bmj_42_s01)" in field["value"]
    assert "more" in field["value"] and len(field["value"]) <= 1024
    assert discord.embed_chars(discord.embed(notification)) <= 6000
    blocks = teams.card(notification)["body"]
    texts = [block["text"] for block in blocks if block["type"] == "TextBlock"]
    assert "**vs baseline** nightly-41" in texts
    (agent_text,) = [t for t in texts if t.startswith("claude-code \\(sonnet\\) 0.967 → 0.600")]
    assert "regressed (12): [<!channel\\> & <script\\>alert\\(1\\)</script\\>](https://platform.runloop" in agent_text
