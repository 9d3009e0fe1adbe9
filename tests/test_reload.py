"""Reloading the config while running: POST /-/reload and SIGHUP; all of it from the next poll, or nothing."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rules.persist import load_rule_state
from tests.running import TOKEN, Running, running_service, write_config
from watcher.app.logs import _BenchwatchHandler
from watcher.cli.run import run_service
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator, create_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = SimJobSpec(name="nightly", n_scenarios=30, agents=[SimAgent(name="a", pass_rate=0.5)], init_s=0, queue_s=0,
                  concurrency=3, scenario_duration_s=(60, 120), fail_rate=0.3)  # fmt: skip
GROUPED = """\
rules:
  - {name: kept, on: job.progress, notify: hook, group_wait: 1h}
  - {name: gone, on: job.progress, notify: hook, group_wait: 1h}
"""
NOW = "rules:\n  - {name: now, on: job.progress, notify: hook}\n"


@pytest.fixture
async def running(tmp_path: Path) -> Any:
    clock = ManualClock()
    sim = Simulator(seed=4, clock=clock)
    sim.add_job(SPEC)
    async with running_service(tmp_path, sim, clock, rules=GROUPED) as started:
        yield started


async def _reload(running: Running) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(running.url + "/-/reload", headers=AUTH) as r:
        return r.status, await r.json()


def _gauges(running: Running) -> dict[str, float]:
    text = running.service.metrics.render()[0].decode()
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("benchwatch_config_last_reload")
    }


def _rewrite(running: Running, rules: str) -> None:
    api, hook = running.service.config.runloop.base_url or "", running.service.config.notifiers["hook"].url
    write_config(running.config.parent, api, str(hook), rules=rules)


async def test_a_valid_config_applies_from_the_next_poll_and_keeps_the_windows_of_rules_still_there(
    running: Running,
) -> None:
    await running.poll(advance_ms=120_000)
    state = await load_rule_state(running.service.store)
    assert {rule for rule, _ in state.groups} == {"kept", "gone"}
    _rewrite(running, "rules:\n  - {name: kept, on: job.progress, notify: hook, group_wait: 1h}\n" + NOW[7:])

    assert await _reload(running) == (200, {"reloaded": True})
    state = await load_rule_state(running.service.store)
    assert {rule for rule, _ in state.groups} == {"kept"}  # carried over; the removed rule's window is gone
    await running.poll(advance_ms=120_000)
    await running.service.worker.drain()
    assert {d.payload["rule"] for d in running.hook.deliveries} == {"now"}
    assert _gauges(running)["benchwatch_config_last_reload_successful"] == 1


async def test_an_invalid_config_is_refused_with_every_problem_at_file_line_and_the_old_one_runs_on(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    loaded_at = _gauges(running)["benchwatch_config_last_reload_success_timestamp_seconds"]
    _rewrite(running, "rules:\n  - {name: now, on: job.progress, notify: hook, group_wait: soon}\n")
    text = running.config.read_text().replace("poll_interval: 1h", "poll_interval: 1h, poll_every: 2h")
    running.config.write_text(text)

    status, answer = await _reload(running)

    assert status == 422
    where = f"{running.config}:"
    assert len(answer["problems"]) == 2 and all(p.startswith(where) for p in answer["problems"])
    assert any("watch.poll_every" in p for p in answer["problems"])
    assert any("rules[0].group_wait" in p for p in answer["problems"])
    logged = [r.getMessage() for r in caplog.records if r.name == "benchwatch.reload"]
    assert all(any(problem in line for line in logged) for problem in answer["problems"])
    gauges = _gauges(running)
    assert gauges["benchwatch_config_last_reload_successful"] == 0
    assert gauges["benchwatch_config_last_reload_success_timestamp_seconds"] == loaded_at
    assert [rule.name for rule in running.service.config.rules] == ["kept", "gone"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _status(url: str, **kwargs: Any) -> int:
    try:
        async with aiohttp.ClientSession() as session, session.request(url=url, **kwargs) as response:
            return response.status
    except aiohttp.ClientConnectionError:
        return 0


async def _until(url: str, expected: int, **kwargs: Any) -> None:
    async with asyncio.timeout(10):
        # `benchwatch run` offers no event to wait on from outside: a condition polled with a deadline.
        while await _status(url, **kwargs) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_sighup_reloads_the_running_watcher(tmp_path: Path, aiohttp_server: Any) -> None:
    sim = Simulator(clock=ManualClock())
    sim.add_job(SPEC)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    config = write_config(tmp_path, api, "http://127.0.0.1:9/hook", token=None, rules=NOW)
    port = _free_port()
    config.write_text(config.read_text().replace("port: 0", f"port: {port}"))
    args = argparse.Namespace(config=config, log_format="text", verbose=False, record=None)
    task = asyncio.create_task(run_service(args))
    silences = f"http://127.0.0.1:{port}/api/silences"
    body = {"matchers": ["job_name=x"], "for": "1h"}
    up = False
    try:
        await _until(silences, 403, method="POST", json=body, headers=AUTH)  # no token: actions disabled
        up = True  # the watcher's signal handlers are in place: signals to this process are safe now
        config.write_text(config.read_text().replace(f"port: {port}", f"port: {port}, token: '{TOKEN}'"))
        os.kill(os.getpid(), signal.SIGHUP)
        await _until(silences, 201, method="POST", json=body, headers=AUTH)
    finally:
        if up:
            os.kill(os.getpid(), signal.SIGTERM)  # the watcher's own handler: an orderly stop
            assert await asyncio.wait_for(task, 10) == 0
        else:
            task.cancel()
        for handler in [h for h in logging.getLogger().handlers if isinstance(h, _BenchwatchHandler)]:
            logging.getLogger().removeHandler(handler)


async def test_what_the_process_bound_at_start_waits_for_a_restart_and_the_rest_applies(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    _rewrite(running, NOW)
    text = running.config.read_text().replace("poll_interval: 1h", "poll_interval: 2h").replace("port: 0", "port: 1")
    running.config.write_text(text)

    assert await _reload(running) == (200, {"reloaded": True})

    config = running.service.config
    assert (config.watch.poll_interval_ms, config.http.port) == (3_600_000, 0)
    assert [rule.name for rule in config.rules] == ["now"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "watch.poll_interval" in warned and "http.enabled, http.host, http.port" in warned


async def test_the_baseline_section_applies_on_reload(running: Running) -> None:
    assert running.service.tracker.comparer is None
    _rewrite(running, "baseline: {name: 'nightly*', history: 5, flaky_flips: 2}\n" + NOW)
    assert await _reload(running) == (200, {"reloaded": True})
    comparer = running.service.tracker.comparer
    assert comparer is not None and comparer.finder.settings.name == "nightly*"
    assert comparer.finder.settings.history == 5
    _rewrite(running, NOW)
    assert await _reload(running) == (200, {"reloaded": True})
    assert running.service.tracker.comparer is None
