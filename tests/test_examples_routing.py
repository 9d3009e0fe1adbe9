"""The routing examples replayed over their recordings (examples/recordings/), as a user would run them."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from notifiers.protocol import NotifierContext
from notifiers.registry import build_notifier
from tests.example_recordings import ALL, RECORDINGS
from tests.fakes.chat import FakeDiscord, FakeTeamsWorkflow
from tests.fakes.webhook import WebhookReceiver
from watcher.app.config import load_config
from watcher.cli.replay import replay
from watcher.core.clock import ManualClock
from watcher.core.notification import Notification

EXAMPLES = Path(__file__).parent.parent / "examples"
ENV = {"RUNLOOP_API_KEY": "k", "SLACK_BOT_TOKEN": "xoxb-test"}


async def dry_run(example: str, recording: str, env: dict[str, str] | None = None) -> tuple[list[Any], list[str]]:
    out, notes = io.StringIO(), io.StringIO()
    config = load_config(EXAMPLES / example, env or ENV)
    await replay(RECORDINGS / f"{recording}.jsonl", out, config=config, notes=notes)
    return [json.loads(line) for line in out.getvalue().splitlines()], notes.getvalue().splitlines()


def test_the_recordings_are_what_the_generator_makes() -> None:
    for name, make in ALL.items():
        lines = (RECORDINGS / f"{name}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == json.loads(json.dumps(make())), name


@pytest.mark.slow
def test_a_failed_job_quiets_its_scenarios_on_the_command_line() -> None:
    command = [
        sys.executable, "-m", "watcher", "replay", str(RECORDINGS / "job-failure.jsonl"),
        "--config", str(EXAMPLES / "inhibit-during-job-failure.yaml"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **ENV}, check=True)
    sent = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(n["rule"], n["events"][0]["job_name"]) for n in sent] == [
        ("job-failed", "nightly-a"),
        ("scenario-failures", "nightly-b"),  # another job's failures still go out
    ]
    assert result.stderr.splitlines() == [
        "at_ms 1788228780000: not sent: inhibited rule 'scenario-failures': 1 event of nightly-a "
        "(by inhibit 'failed-job-quiets-its-scenarios')"
    ]


async def test_office_hours_mute_the_night_on_the_recordings_clock() -> None:
    sent, notes = await dry_run("office-hours.yaml", "overnight")
    assert Counter((n["rule"], n["events"][0]["job_name"]) for n in sent) == {
        ("finished", "nightly-c"): 1,  # no time interval on this rule
        ("finished", "daytime-d"): 1,
        ("failures-in-office-hours", "daytime-d"): 2,  # 12:00 in Berlin on a Tuesday
    }
    assert len(notes) == 2 and all("muted rule 'failures-in-office-hours'" in note for note in notes)
    assert all("nightly-c (outside active time intervals office-hours)" in note for note in notes)


async def test_once_per_job_name_across_nights() -> None:
    sent, notes = await dry_run("first-failure-per-nightly.yaml", "two-nightlies")
    assert [n["events"][0]["job_name"] for n in sent] == ["nightly-e", "weekly-f"]
    assert notes == [
        "at_ms 1788314520000: not sent: once_per rule 'first-failure': 5 events of nightly-e "
        "(already sent for this value)"
    ]
    assert sent[0]["title"].startswith("nightly-e: first failure (")


async def test_chat_tools_receive_what_the_example_sends(aiohttp_server: Any, context: NotifierContext) -> None:
    receivers = {"teams": FakeTeamsWorkflow(), "discord": FakeDiscord(), "google-chat": WebhookReceiver()}
    urls = {name: str((await aiohttp_server(fake.app())).make_url("/hook")) for name, fake in receivers.items()}
    env = ENV | {
        "TEAMS_WEBHOOK_URL": urls["teams"], "DISCORD_WEBHOOK_URL": urls["discord"],
        "GOOGLE_CHAT_WEBHOOK_URL": urls["google-chat"],
    }  # fmt: skip
    sent, _ = await dry_run("chat-tools.yaml", "job-failure", env)
    assert Counter(n["notifier"] for n in sent) == {"teams": 4, "discord": 4, "google-chat": 2}
    config = load_config(EXAMPLES / "chat-tools.yaml", env).config
    for raw in sent:
        notification = Notification.model_validate(raw)
        notifier = build_notifier(
            notification.notifier, config.notifiers[notification.notifier], context, ManualClock()
        )
        await notifier.send(notification)  # each fake refuses what its service would refuse
    chat = receivers["google-chat"]
    assert isinstance(chat, WebhookReceiver)
    first = chat.deliveries[0].payload
    assert first["text"].startswith("*nightly-b: finished") and "\n" in first["text"]
    assert first["thread"] == {"threadKey": sent[0]["events"][0]["job_id"]}


async def test_check_shows_inhibitions_and_time_intervals(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from watcher.cli.check import check

    for name, value in ENV.items():  # the examples read the API key and token from the environment
        monkeypatch.setenv(name, value)
    for example in ("inhibit-during-job-failure.yaml", "office-hours.yaml"):
        assert await check(argparse.Namespace(config=EXAMPLES / example)) == 0
    out = capsys.readouterr().out
    assert (
        "inhibit (2):\n  failed-job-quiets-its-scenarios: drop kind: scenario.* after a notification about "
        "rule: job-failed with equal job_id, while its incident is open or for 6h after it was sent\n"
    ) in out
    assert "  blind-watcher-quiets-everything: drop kind: [scenario.*, job.stalled] after" in out  # YAML, not repr
    assert "  office-hours: [08:00-19:00; weekdays monday:friday (Europe/Berlin)]\n" in out
    assert "; muted during holidays; only during office-hours" in out
