"""Digests: when they are due (local time, DST, weeks), what they say, and the service sending each one exactly once —
across a restart that missed two, and across replicas sharing a store — on a manual clock, with the simulator's
nightlies, a real webhook receiver and real SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Backend, ServerFactory
from tests.fakes.webhook import WebhookReceiver
from tests.nightlies import BASELINE_RESULTS, CURRENT_RESULTS, add_nightly
from watcher.app.config import load_config
from watcher.app.service import Service
from watcher.cli.digest import digest_command
from watcher.cli.main import build_parser, main
from watcher.core.clock import ManualClock
from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.core.events import JobFinished, RunResult
from watcher.core.failureclass import DEFAULT_FAILURE_CLASSES
from watcher.diff.digest import DigestSchedule, digest_job, digest_message
from watcher.pipeline.digest import STATE_NAMESPACE, DigestConfig, DigestMaker, DigestScheduler
from watcher.simulator import Simulator, create_app


def _ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


PARIS = ZoneInfo("Europe/Paris")


def test_a_daily_digest_is_due_at_its_local_time_across_a_dst_change() -> None:
    daily = DigestSchedule(time(9, 0), PARIS)
    # December: Paris is UTC+1, so 09:00 there is 08:00 UTC
    assert daily.due_at_or_before(_ms(2026, 12, 6, 8, 30)) == _ms(2026, 12, 6, 8, 0)
    assert daily.due_at_or_before(_ms(2026, 12, 6, 8, 0)) == _ms(2026, 12, 6, 8, 0)  # due at that very instant
    assert daily.due_at_or_before(_ms(2026, 12, 6, 7, 59)) == _ms(2026, 12, 5, 8, 0)
    # 29 March 2026 Paris moves to UTC+2: 09:00 is 07:00 UTC that day, and the day before it was 23 hours earlier
    assert daily.due_at_or_before(_ms(2026, 3, 29, 7, 30)) == _ms(2026, 3, 29, 7, 0)
    assert daily.due_before(_ms(2026, 3, 29, 7, 0)) == _ms(2026, 3, 28, 8, 0)


def test_a_weekly_digest_falls_on_mondays() -> None:
    weekly = DigestSchedule(time(9, 0), UTC, every_days=7)
    # 7 December 2026 is a Monday: from the Sunday before back to the Monday before
    assert weekly.due_at_or_before(_ms(2026, 12, 6, 23, 0)) == _ms(2026, 11, 30, 9, 0)
    assert weekly.due_at_or_before(_ms(2026, 12, 7, 9, 1)) == _ms(2026, 12, 7, 9, 0)
    assert weekly.due_before(_ms(2026, 12, 7, 9, 0)) == _ms(2026, 11, 30, 9, 0)


def _outcomes(results: dict[str, Any]) -> JobOutcomes:
    scenarios = tuple(
        ScenarioResult(
            scenario_definition_id=sid,
            state="COMPLETED" if isinstance(value, float) else "FAILED",
            score=value if isinstance(value, float) else None,
            scenario_run_id=None if value == "setup" else f"scr_{sid}",
            exception_type=None if isinstance(value, float) else "NonZeroAgentExitCodeError",
        )
        for sid, value in results.items()
    )
    agent = AgentOutcomes(agent_name="codex", model_name="gpt-5", benchmark_run_id="bmr_1", scenarios=scenarios)
    return JobOutcomes(
        job_id="bmj_1", job_name="nightly-7", state="completed", create_time_ms=0, benchmark="b", agents=(agent,)
    )


def test_the_message_lists_each_job_with_scores_pass_rates_and_failure_classes() -> None:
    finished = JobFinished(
        id="ev_1", job_id="bmj_1", job_name="nightly-7", at_ms=_ms(2026, 12, 5, 23, 0), from_state="running",
        state="completed", failure_reason=None, outcomes=(),
    )  # fmt: skip
    # 4 scenarios: one passed, one scored 0.5, one failed (the agent's), one failed in setup: score (1 + 0.5) / 4
    row = digest_job(
        finished, _outcomes({"a": 1.0, "b": 0.5, "c": "failed", "d": "setup"}), None, DEFAULT_FAILURE_CLASSES
    )
    failed = JobFinished(
        id="ev_2", job_id="bmj_2", job_name="adhoc\nrun", at_ms=_ms(2026, 12, 6, 1, 0), from_state="running",
        state="failed", failure_reason="Scenario setup failed",
        outcomes=(RunResult(benchmark_run_id="bmr_2", agent_name="claude-code", model_name=None, average_score=None,
                            n_completed=0, n_failed=2, n_timeout=0, duration_ms=None),),
    )  # fmt: skip
    without_outcomes = digest_job(failed, None, None, DEFAULT_FAILURE_CLASSES, infra_degraded=True)
    title, text = digest_message(
        "daily", _ms(2026, 12, 5, 8, 0), _ms(2026, 12, 6, 8, 0), PARIS, [without_outcomes, row]
    )
    assert title == "Digest daily: 2 jobs finished, 2 with infra failures (2026-12-05 09:00 → 2026-12-06 09:00)"
    assert text.splitlines() == [
        "nightly-7 — completed",
        "  codex (gpt-5): score 0.375, pass rate 25%",
        "  failures: 1 setup, 1 agent",
        "adhoc run — failed: Scenario setup failed",
        "  claude-code: score n/a",
        "  failures: 2 agent; infra degraded",
    ]
    empty_title, empty_text = digest_message("daily", _ms(2026, 12, 5, 8, 0), _ms(2026, 12, 6, 8, 0), UTC, [])
    assert empty_title.startswith("Digest daily: 0 jobs finished (") and empty_text.startswith("No job finished")


# -- the service sends each digest once ------------------------------------------------------------------------------

T0 = _ms(2026, 12, 5, 10, 0)


def _config(folder: Path, api: str, hook: str) -> Path:
    path = folder / "benchwatch.yaml"
    path.write_text(
        f"runloop: {{base_url: '{api}', api_key: k}}\n"
        "watch: {discover: {name: 'nightly-*'}, poll_interval: 1m, spread: 0, jitter: 0, max_requests_per_s: null}\n"
        "state: {path: ./state.db}\nhttp: {enabled: false}\nbaseline: {}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}'}}\n"
        "digests:\n  - {name: daily, at: '09:00', time_zone: Europe/Paris, match: {job_name: 'nightly-*'},\n"
        "     notify: hook}\n"
    )
    return path


async def test_the_service_sends_each_digest_once_and_catches_up_after_a_restart(
    sim: Simulator, clock: ManualClock, aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    clock.set(T0)
    receiver = WebhookReceiver()
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    hook = str((await aiohttp_server(receiver.app())).make_url("/hook"))
    add_nightly(sim, clock, "nightly-41", BASELINE_RESULTS, days_ago=1)
    add_nightly(sim, clock, "nightly-42", CURRENT_RESULTS | {"scn_05": "setup"}, days_ago=0)
    loaded = load_config(_config(tmp_path, api, hook))

    async def advance(seconds: float) -> None:
        clock.advance(round(seconds * 1000))

    service = Service(loaded, clock=clock, sleep=advance)
    async with service.started():
        assert await service.send_digests() == 0  # first seen: its first digest is the next one due
        for _ in range(60):  # the nightly runs and completes (about half an hour)
            await service.poll_once()
            clock.advance(60_000)
        await service.drain()
        before = len(receiver.requests)
        assert await service.send_digests() == 0  # not due before 09:00 in Paris
        clock.set(_ms(2026, 12, 6, 8, 0, 20))
        assert await service.send_digests() == 1
        assert await service.send_digests() == 0  # once
        await service.drain()
    digests = [d.payload for d in receiver.deliveries[before:] if d.payload["rule"] == "digest:daily"]
    (digest,) = digests
    assert digest["title"] == (
        "Digest daily: 1 job finished, 1 with regressions, 1 with infra failures (2026-12-05 09:00 → 2026-12-06 09:00)"
    )
    lines = digest["text"].splitlines()
    assert lines[0] == "nightly-42 — completed"
    assert (
        lines[1].startswith("  claude-code (claude-sonnet-4-6): score ") and "; codex (gpt-5): score 0.667" in lines[1]
    )
    assert lines[2] == "  vs nightly-41: 3 regressed (3 new), 1 fixed, 0 flaky; failures: 1 setup, 1 timeout, 2 agent"

    clock.set(_ms(2026, 12, 8, 11, 0))  # down through two due times
    restarted = Service(loaded, clock=clock, sleep=advance)
    async with restarted.started():
        assert await restarted.send_digests() == 1  # one digest for the whole time away
        assert await restarted.send_digests() == 0
        await restarted.drain()
    caught_up = [d.payload for d in receiver.deliveries if d.payload["rule"] == "digest:daily"][1:]
    assert [d["title"] for d in caught_up] == ["Digest daily: 0 jobs finished (2026-12-06 09:00 → 2026-12-08 09:00)"]


async def test_replicas_sharing_a_store_send_a_digest_once(backend: Backend) -> None:
    digest = DigestConfig.model_validate({"name": "daily", "at": "09:00", "notify": ["hook", "mail"]})
    stores = [backend.store("shared"), backend.store("shared")]
    for store in stores:
        await store.open()
    try:
        await stores[0].put_state(STATE_NAMESPACE, "daily", json.dumps({"last_due_ms": _ms(2026, 12, 5, 9, 0)}))
        replicas = [DigestScheduler(store, DigestMaker(store, None), [digest]) for store in stores]
        now_ms = _ms(2026, 12, 6, 9, 0, 5)
        sent = await asyncio.gather(*(replica.run_due(now_ms) for replica in replicas))
        assert sorted(sent) in ([0, 2], [2, 2])  # both may build it; the second commit adds nothing
        items = await stores[0].outbox_items()
        assert sorted(item.notification.notifier for item in items) == ["hook", "mail"]
        assert await stores[1].get_state(STATE_NAMESPACE, "daily") == json.dumps(
            {"last_due_ms": _ms(2026, 12, 6, 9, 0)}
        )
        assert await replicas[1].run_due(now_ms + 60_000) == 0
    finally:
        for store in stores:
            await store.close()


async def test_the_digest_command_prints_without_sending(
    sim: Simulator,
    clock: ManualClock,
    aiohttp_server: ServerFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    loaded = load_config(_config(tmp_path, api, "http://127.0.0.1:9/hook"))
    args = build_parser().parse_args(["digest", "--config", str(loaded.path), "--since", "24h"])
    assert await digest_command(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("Digest daily: 0 jobs finished (") and "No job finished between" in out


def test_check_says_what_the_digests_and_the_failure_classes_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text(
        "watch: {jobs: [bmj_1], infra_alert_ratio: 0.3}\nnotifiers:\n  hook: {type: console}\n"
        "failure_classes: {setup: [MyEnvError]}\n"
        "digests:\n  - {name: daily, at: '09:00', time_zone: Europe/Paris, match: {job_name: 'nightly-*'},\n"
        "     notify: hook}\n"
    )
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "digests (1):\n  daily: every 1d at 09:00 Europe/Paris, job_name=nightly-* → hook\n" in out
    assert "failure classes, besides the built-in table: setup: MyEnvError\n" in out
    assert "job.infra_degraded: past 30% of scenarios failed in setup\n" in out
    assert "notifiers no rule uses" not in out  # the digest uses it
