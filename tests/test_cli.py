"""The command line as a user meets it: help, one-line errors, exit codes, the simulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import Backend
from watcher.cli.errors import EXIT_READER_GONE
from watcher.cli.main import main
from watcher.core.clock import ManualClock
from watcher.pipeline.sample import sample_notification
from watcher.simulator import SimJobSpec, Simulator, create_app
from watcher.store.sqlite import SQLiteStore

BENCHWATCH = [sys.executable, "-m", "watcher"]
SECRET = "rl_cli_SECRET_987"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLOOP_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["simulate"], ["demo"], ["jobs"], ["job"], ["wait"], ["replay"], ["record"], ["check"], ["schema"],
     ["deliveries"], ["deliveries", "list"], ["deliveries", "show"], ["deliveries", "retry"], ["deliveries", "flush"],
     ["test-notify"],
     ["silences"], ["silences", "add"], ["silences", "list"], ["silences", "expire"]],
)  # fmt: skip
@pytest.mark.slow
def test_help_of_every_command(command: list[str]) -> None:
    result = subprocess.run([*BENCHWATCH, *command, "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "usage: benchwatch" in result.stdout


def test_usage_errors_exit_2_in_one_line() -> None:
    result = subprocess.run([*BENCHWATCH, "simulate", "--rate-429", "3"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "must be between 0 and 1" in result.stderr and "Traceback" not in result.stderr


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *BENCHWATCH, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_api_errors_are_one_readable_line(aiohttp_server: object) -> None:
    sim = Simulator(clock=ManualClock(), api_key="right-key")
    plan = sim.add_job(SimJobSpec(name="nightly"))
    server = await aiohttp_server(create_app(sim))  # type: ignore[operator]
    base_url = str(server.make_url("")).rstrip("/")

    code, out, err = await _run("job", plan.job_id, env=_env(RUNLOOP_BASE_URL=base_url, RUNLOOP_API_KEY=SECRET))
    assert code == 4 and out == ""
    assert err.count("\n") == 1 and "RUNLOOP_API_KEY" in err and SECRET not in err and "Traceback" not in err

    code, out, err = await _run("job", "bmj_missing", env=_env(RUNLOOP_BASE_URL=base_url, RUNLOOP_API_KEY="right-key"))
    assert code == 4 and err.strip() == "benchwatch: error: GET /v1/benchmark_jobs/bmj_missing: not found (HTTP 404)"

    code, out, err = await _run("jobs", "--base-url", base_url, env=_env(RUNLOOP_API_KEY="right-key"))
    assert code == 0 and plan.job_id in out and "nightly" in out

    code, out, err = await _run("job", plan.job_id, env=_env(RUNLOOP_BASE_URL=base_url, RUNLOOP_API_KEY="right-key"))
    assert code == 0 and f'"id": "{plan.job_id}"' in out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _wait_until_serving(url: str, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_simulate_runs_as_a_process_and_stops_cleanly_on_sigterm() -> None:
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        *BENCHWATCH, "simulate", "--port", str(port), "--seed", "5", "--jobs", "3", "--api-key", "k",
        env=_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _wait_until_serving(f"http://127.0.0.1:{port}/_sim/faults", deadline_s=20)
        async with (
            aiohttp.ClientSession(headers={"Authorization": "Bearer k"}) as http,
            http.get(f"http://127.0.0.1:{port}/v1/benchmark_jobs") as response,
        ):
            listing = await response.json()
        assert len(listing["jobs"]) == 7  # four demo jobs and three extra
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}" in out.decode()


@pytest.mark.slow
async def test_simulate_reports_a_busy_port_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = await _run("simulate", "--port", str(busy.getsockname()[1]), env=_env())
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1 and "address" in err.lower()


@pytest.mark.slow
async def test_demo_runs_to_a_summary() -> None:
    code, out, err = await _run("demo", "--speed", "600", "--interval", "1", "--max-seconds", "60", env=_env())
    assert code == 0, err
    assert re.search(r"demo-setup-fails: finished: \w+ → failed", out)
    assert "demo-nightly-completes: finished: running → completed" in out
    assert "demo-failure-burst: failed: " in out and "run finished: codex score" in out
    assert "‼ [screen] demo-stalls: stalled" in out  # a notification, through the rules
    summary = out.split("summary after")[1]
    assert "demo-stalls" in summary and "stalled" in summary and "signed notifications" in summary
    assert out.index("legend:") < out.index(" · demo-") and "a notification a rule sent" in out
    lines = out.splitlines()
    stalled = lines.index(next(line for line in lines if line.startswith("‼ [screen] demo-stalls: stalled")))
    assert not lines[stalled + 1].startswith("    ")  # a single event's notification: its text said once
    shown = out.split("one of them, as the receiver got it (POST /hook):")[1]
    assert re.search(r"webhook-signature: v1,\S+\n    verified: HMAC-SHA256", shown)
    hint = lines[-1]
    assert (
        hint.startswith("next: RUNLOOP_API_KEY=any ") and " -m watcher check examples/pagerduty-on-failure.yaml" in hint
    )


def test_the_demo_hint_is_a_command_that_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from watcher.cli.demo import next_hint

    root = Path(__file__).parent.parent
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, "argv", [str(root / ".venv" / "bin" / "benchwatch"), "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # not activated: benchwatch is not on PATH
    hint = next_hint()
    command = hint.removeprefix("next: ").split("   (")[0]
    assert command == "RUNLOOP_API_KEY=any .venv/bin/benchwatch check examples/pagerduty-on-failure.yaml"
    # what the command does, run here (a second interpreter would cost seconds): the script is there, and with
    # the one variable the hint sets, the example checks out
    assert os.access(root / ".venv" / "bin" / "benchwatch", os.X_OK)
    monkeypatch.delenv("RUNLOOP_API_KEY", raising=False)
    assert main(["check", "examples/pagerduty-on-failure.yaml"]) == 2  # the variable is needed: the hint sets it
    monkeypatch.setenv("RUNLOOP_API_KEY", "any")
    assert main(["check", "examples/pagerduty-on-failure.yaml"]) == 0
    assert capsys.readouterr().out.startswith("examples/pagerduty-on-failure.yaml: OK")


async def _run_into_a_closed_pipe(*args: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """Run benchwatch with stdout a pipe nobody reads any more, as after `| head -1` has its line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            *BENCHWATCH, *args, env=env, cwd=cwd, stdout=write_end, stderr=asyncio.subprocess.PIPE
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, err.decode()


@pytest.mark.slow
async def test_every_command_that_prints_exits_quietly_when_its_reader_has_gone(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    clock = ManualClock()
    sim = Simulator(clock=clock)
    plans = [sim.add_job(SimJobSpec(name=f"job-{index}", n_scenarios=2)) for index in range(3)]
    clock.advance(24 * 3_600_000)
    server = await aiohttp_server(create_app(sim))
    env = _env(RUNLOOP_BASE_URL=str(server.make_url("")).rstrip("/"), RUNLOOP_API_KEY="any")
    (tmp_path / "views.jsonl").write_text("".join(json.dumps(sim.job_view(plan.job_id)) + "\n" for plan in plans))
    # One per kind of command: printing at once, after requests, in a polling loop, from a file. The handling is
    # main()'s, so it holds for the others too.
    commands = [["schema"], ["jobs"], ["wait", plans[0].job_id, "--json"], ["replay", "views.jsonl"]]
    ended = await asyncio.gather(*(_run_into_a_closed_pipe(*command, env=env, cwd=tmp_path) for command in commands))
    assert dict(zip(map(" ".join, commands), ended, strict=True)) == {
        " ".join(command): (EXIT_READER_GONE, "") for command in commands
    }


# -- the one boundary: exit 2 for usage errors, 70 for bugs (the traceback with --debug) ------------------------


def _corrupt_state(tmp_path: Path) -> Path:
    """A state database whose one outbox row is not a notification: reading it is an error nobody planned for."""
    path = tmp_path / "state.db"

    async def write() -> None:
        async with SQLiteStore(path) as store:
            await store.commit(notifications=[sample_notification("hook", ManualClock().now_ms())])

    asyncio.run(write())
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE outbox SET body = '{\"id\": 7}'")
    return path


def test_an_internal_error_is_one_line_and_exit_70(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _corrupt_state(tmp_path)
    assert main(["deliveries", "list", "--state", str(state), "--status", "all"]) == 70
    err = capsys.readouterr().err
    assert err.startswith("benchwatch: internal error: ValidationError: ") and err.count("\n") == 1
    assert err.rstrip().endswith("(a bug; run with `--debug` for the traceback)") and "Traceback" not in err


def test_debug_prints_the_traceback_of_an_internal_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = _corrupt_state(tmp_path)
    assert main(["--debug", "deliveries", "list", "--state", str(state), "--status", "all"]) == 70
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "Traceback (most recent call last):" and any("read_outbox_item" in line for line in lines)
    assert lines[-1].startswith("benchwatch: internal error: ValidationError: ")


def test_usage_errors_of_every_kind_exit_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text("notifiers: {screen: {type: console}}\n")
    (tmp_path / "corrupt").mkdir()
    state = _corrupt_state(tmp_path / "corrupt")
    cases = [
        (["check", str(tmp_path / "missing.yaml")], "missing.yaml"),  # a config file that is not there
        (["check", str(config), "--config", str(config)], "give the config once"),
        (["check"], "the config file is required: CONFIG or --config CONFIG"),
        (["test-notify", str(config), "hok"], "no notifier 'hok'"),
        (["silences", "list"], "give --state STATE (a path or a postgresql:// URL) or --config CONFIG"),
        (["deliveries", "show", "nt_nope", "--state", str(state)], "no notification 'nt_nope'"),
        (["deliveries", "list", "--state", str(tmp_path / "none.db")], "none.db: no state database yet"),
        (["replay", str(tmp_path / "nope.jsonl")], "nope.jsonl: No such file or directory"),
        (["silences", "list", "--state", str(config / "state.db")], "cannot create its folder"),  # under a file
        (["record", "bmj_1", "--out", str(tmp_path / "no" / "such" / "folder.jsonl")], "--out: "),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


@pytest.mark.parametrize("argv", [["job", ""], ["wait", " "], ["compare", "bmj_1", ""], ["record", "", "--out", "x"]])
def test_an_empty_job_id_is_an_argument_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and "a job id cannot be empty" in err and "Traceback" not in err


def test_check_and_test_notify_take_the_config_either_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text("state: {path: ./state.db}\nnotifiers: {screen: {type: console}}\n")
    assert main(["check", str(config)]) == 0
    positional = capsys.readouterr().out
    assert main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out == positional and positional.startswith(f"{config}: OK")
    assert main(["test-notify", str(config), "screen"]) == 0
    assert main(["test-notify", "--config", str(config), "screen", "--state", str(tmp_path / "other.db")]) == 0
    assert capsys.readouterr().out.count("screen: sent in") == 2
    assert (tmp_path / "state.db").exists() and (tmp_path / "other.db").exists()  # the config's, then --state


@pytest.mark.slow
def test_silences_and_deliveries_take_the_state_as_a_path_or_a_url(
    postgres_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = Backend("postgres", tmp_path, postgres_database).location()
    for state in (str(tmp_path / "state.db"), url):  # no config at all: --state alone
        assert main(["silences", "add", "--state", state, "--match", "job_name=x", "--for", "1h"]) == 0
        silence_id = capsys.readouterr().out.strip()
        assert main(["silences", "list", "--state", state]) == 0
        assert silence_id in capsys.readouterr().out
        assert main(["silences", "expire", "--state", state, silence_id]) == 0
        assert main(["deliveries", "list", "--state", state]) == 0
        assert "(0 shown; 0 pending, 0 sent, 0 dead)" in capsys.readouterr().out


@pytest.mark.slow
async def test_run_takes_the_state_over_the_config_s(tmp_path: Path) -> None:
    config = tmp_path / "benchwatch.yaml"
    config.write_text("runloop: {base_url: 'http://127.0.0.1:9', api_key: k}\nwatch: {jobs: [bmj_1]}\n")
    elsewhere = tmp_path / "elsewhere.db"
    async with SQLiteStore(elsewhere, exclusive=True):  # held: the second `run` on it is refused at once
        code, _, err = await _run("run", "--config", str(config), "--state", str(elsewhere), env=_env())
    assert code == 2 and err.startswith(f"benchwatch: error: {elsewhere}: another benchwatch process")
    assert not (tmp_path / "benchwatch.db").exists()  # the config's default state was never opened
    (tmp_path / "locked.db.lock").mkdir()  # where the lock file should be: it cannot be made
    code, _, err = await _run("run", "--config", str(config), "--state", str(tmp_path / "locked.db"), env=_env())
    assert code == 2 and err == f"benchwatch: error: {tmp_path / 'locked.db.lock'}: Is a directory\n"


@pytest.mark.parametrize(
    "command",
    [["run"], ["replay"], ["compare"], ["deliveries", "list"], ["deliveries", "show"], ["deliveries", "retry"],
     ["deliveries", "flush"], ["silences", "add"], ["silences", "list"], ["silences", "expire"], ["test-notify"]],
)  # fmt: skip
def test_every_command_that_reads_the_state_takes_state_and_config(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--state STATE" in text and "state (path or url)" in text and "--config CONFIG" in text
