"""API and user strings shown at a terminal — job names, failure messages, silence comments — can send no escape
sequence, no C1 control, no line break: `printable` is the one function every command's output goes through."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import FakeSleep
from watcher.api.client import RequestLimits, RunloopClient
from watcher.cli.jobs import list_jobs
from watcher.cli.main import build_parser, main
from watcher.cli.wait.loop import run_wait
from watcher.cli.wait.model import WaitOptions
from watcher.cli.wait.views import PlainView, RichView
from watcher.core.printable import printable
from watcher.simulator import SimJobSpec, Simulator

# A screen clear, a window title (OSC 0), a clipboard write (OSC 52), a lone C1 CSI, a bidi override, CR/LF
HOSTILE = "evil\x1b[2J\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x9b31m\u202egnp.exe\r\nX-Injected: 1"
PAYLOADS = ("\x1b[2J", "\x1b]0;", "\x1b]52;", "\x9b", "\u202e", "\r\nX-Injected", "\x07")


def _clean(output: str) -> bool:
    return not any(payload in output for payload in PAYLOADS)


def test_printable_turns_every_control_and_format_character_into_a_space() -> None:
    shown = printable(HOSTILE)
    assert shown.isprintable() and len(shown) == len(HOSTILE) and shown.startswith("evil [2J ]0;owned")
    assert printable("plain nightly-42 · ✓") == "plain nightly-42 · ✓"


async def test_wait_shows_a_hostile_job_name_and_failure_reason_inert(
    sim: Simulator, sim_url: str, fake_sleep: FakeSleep
) -> None:
    plan = sim.add_job(SimJobSpec(name=HOSTILE, n_scenarios=2, outcome="failed", end_after_s=60, init_s=1))
    sim.tamper(plan.job_id, {"failure_reason": HOSTILE})
    for make_view in (
        lambda out, err: RichView(Console(file=out, force_terminal=True, width=150), err),
        PlainView,
    ):
        out, err = io.StringIO(), io.StringIO()
        limits = RequestLimits(max_per_s=None)
        async with RunloopClient(base_url=sim_url, api_key="k", sleep=fake_sleep, limits=limits) as client:
            options = WaitOptions(job_id=plan.job_id, interval_ms=30_000)
            result = await run_wait(client, options, make_view(out, err), clock=fake_sleep.clock, sleep=fake_sleep)
        assert result.exit_code == 1 and "owned" in out.getvalue()  # the name is shown, made inert
        assert _clean(out.getvalue()) and _clean(err.getvalue()), out.getvalue()


async def test_jobs_shows_a_hostile_job_name_inert(
    sim: Simulator, sim_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNLOOP_API_KEY", "k")
    plan = sim.add_job(SimJobSpec(name="honest"))
    sim.tamper(plan.job_id, {"name": HOSTILE, "state": "run\x9bning"})
    assert await list_jobs(build_parser().parse_args(["jobs", "--base-url", sim_url])) == 0
    out = capsys.readouterr().out
    assert "owned" in out and _clean(out) and len(out.splitlines()) == 2  # the header and one row


def test_silences_list_shows_a_hostile_comment_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text("watch: {jobs: [bmj_a]}\nstate: {path: ./state.db}\n")
    args = ["--config", str(config), "--match", "job_name=x", "--for", "1h", "--comment", HOSTILE]
    assert main(["silences", "add", *args]) == 0
    assert main(["silences", "list", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "owned" in out and _clean(out)


def test_check_shows_hostile_config_strings_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text(
        "notifiers: {ops: {type: console}}\n"
        'rules: [{name: r, on: job.finished, notify: ops, where: {job_name: "evil\\e[2J\\x9b31m"}}]\n'
        'silences: [{match: {job_name: x}, comment: "owned\\e]0;title\\a"}]\n'
    )
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out
    assert "owned" in out and "evil" in out and _clean(out) and "\x1b" not in out
    config.write_text('watch: {jobs: ["\\e[2J"], poll_interval: "\\e]0;x\\a"}\n')
    assert main(["check", str(config)]) == 2
    assert _clean(capsys.readouterr().err)
