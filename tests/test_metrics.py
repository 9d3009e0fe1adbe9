"""Metrics: each method moves its series, deliveries sync by difference, and the exposition parses — and passes
`promtool check metrics` as a running service serves it."""

from __future__ import annotations

import asyncio
from asyncio.subprocess import PIPE, STDOUT
from collections import Counter
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.base import Reply
from tests.running import running_service
from watcher.core.clock import ManualClock
from watcher.simulator import SimJobSpec, Simulator
from watcher.web.metrics import Metrics


def _value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_polls_count_by_outcome_and_time_each_poll() -> None:
    metrics = Metrics()
    assert _value(metrics, "benchwatch_polls_total", outcome="error") == 0  # present before the first error
    metrics.poll(0.02, ok=True)
    metrics.poll(0.5, ok=True)
    metrics.poll(61.0, ok=False)
    metrics.poll_cycle(3.0)

    assert _value(metrics, "benchwatch_polls_total", outcome="ok") == 2
    assert _value(metrics, "benchwatch_polls_total", outcome="error") == 1
    assert _value(metrics, "benchwatch_poll_duration_seconds_count") == 3
    assert _value(metrics, "benchwatch_poll_duration_seconds_bucket", le="0.025") == 1
    assert _value(metrics, "benchwatch_poll_duration_seconds_bucket", le="60.0") == 2
    assert _value(metrics, "benchwatch_poll_duration_seconds_bucket", le="+Inf") == 3
    assert _value(metrics, "benchwatch_poll_cycle_duration_seconds_sum") == 3.0


def test_api_errors_are_labelled_by_reason_and_status() -> None:
    metrics = Metrics()
    metrics.api_error("rate_limited", 429)
    metrics.api_error("rate_limited", 429)
    metrics.api_error("timeout", None)

    assert _value(metrics, "benchwatch_api_errors_total", reason="rate_limited", status="429") == 2
    assert _value(metrics, "benchwatch_api_errors_total", reason="timeout", status="none") == 1


def test_events_count_per_kind() -> None:
    metrics = Metrics()
    metrics.events(["job.discovered", "run.started", "run.started"])
    metrics.events([])

    assert _value(metrics, "benchwatch_events_total", kind="job.discovered") == 1
    assert _value(metrics, "benchwatch_events_total", kind="run.started") == 2


def test_gauges_hold_the_last_value_set() -> None:
    metrics = Metrics()
    metrics.outbox({"pending": 3, "sent": 10, "dead": 1})
    metrics.outbox({"sent": 12})
    metrics.last_successful_poll(1_790_000_000.5)
    metrics.watched(4)
    metrics.api_reachable(True)
    metrics.api_reachable(False)

    assert _value(metrics, "benchwatch_outbox_pending") == 0
    assert _value(metrics, "benchwatch_dead_letters") == 0
    assert _value(metrics, "benchwatch_last_successful_poll_timestamp_seconds") == 1_790_000_000.5
    assert _value(metrics, "benchwatch_watched_jobs") == 4
    assert _value(metrics, "benchwatch_api_reachable") == 0


def test_sync_deliveries_adds_only_what_grew() -> None:
    metrics = Metrics()
    stats: Counter[tuple[str, str, str]] = Counter()
    stats[("slack", "sent", "ok")] += 2
    stats[("email", "retry", "timeout")] += 1
    metrics.sync_deliveries(stats)
    metrics.sync_deliveries(stats)  # nothing new: nothing added
    stats[("slack", "sent", "ok")] += 3
    stats[("email", "dead", "auth")] += 1
    metrics.sync_deliveries(stats)

    name = "benchwatch_notifications_total"
    assert _value(metrics, name, notifier="slack", outcome="sent", reason="ok") == 5
    assert _value(metrics, name, notifier="email", outcome="retry", reason="timeout") == 1
    assert _value(metrics, name, notifier="email", outcome="dead", reason="auth") == 1


def test_sync_deliveries_from_a_new_worker_counts_from_its_zero() -> None:
    metrics = Metrics()
    metrics.sync_deliveries({("slack", "sent", "ok"): 5})
    metrics.sync_deliveries({("slack", "sent", "ok"): 2})  # a restarted worker's counter
    metrics.sync_deliveries({("slack", "sent", "ok"): 3})

    assert _value(metrics, "benchwatch_notifications_total", notifier="slack", outcome="sent", reason="ok") == 8


def test_render_is_parseable_exposition_of_our_series_only() -> None:
    metrics = Metrics()
    metrics.poll(0.1, ok=True)
    metrics.api_error("server_error", 503)
    metrics.events(["job.finished"])
    metrics.sync_deliveries({("webhook", "sent", "ok"): 1})

    body, content_type = metrics.render()
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}

    assert content_type.startswith("text/plain")
    assert all(name.startswith("benchwatch_") for name in families)
    assert {
        "benchwatch_polls",
        "benchwatch_poll_duration_seconds",
        "benchwatch_poll_cycle_duration_seconds",
        "benchwatch_api_errors",
        "benchwatch_events",
        "benchwatch_notifications",
        "benchwatch_outbox_pending",
        "benchwatch_dead_letters",
        "benchwatch_last_successful_poll_timestamp_seconds",
        "benchwatch_watched_jobs",
        "benchwatch_api_reachable",
    } <= set(families)
    errors = [s for s in families["benchwatch_api_errors"].samples if s.name == "benchwatch_api_errors_total"]
    assert [(s.labels, s.value) for s in errors] == [({"reason": "server_error", "status": "503"}, 1.0)]
    assert families["benchwatch_polls"].type == "counter"
    assert families["benchwatch_poll_duration_seconds"].type == "histogram"
    assert families["benchwatch_api_reachable"].type == "gauge"


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.watched(7)

    assert _value(second, "benchwatch_watched_jobs") == 0


def test_readiness_interval_and_skipped_cycles() -> None:
    metrics = Metrics()
    metrics.readiness(ready=False, store_writable=True)
    metrics.poll_interval(30.0)
    metrics.cycle_skipped()
    metrics.cycle_skipped()

    assert _value(metrics, "benchwatch_ready") == 0 and _value(metrics, "benchwatch_store_writable") == 1
    assert _value(metrics, "benchwatch_poll_interval_seconds") == 30.0
    assert _value(metrics, "benchwatch_poll_cycles_skipped_total") == 2


async def test_the_running_service_s_metrics_pass_promtool(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    clock = ManualClock()
    sim = Simulator(seed=5, clock=clock)
    sim.add_job(SimJobSpec(name="nightly", n_scenarios=6, fail_rate=0.3, timeout_rate=0.2, init_s=0, queue_s=0))
    async with running_service(tmp_path, sim, clock) as running:
        running.hook.then(Reply(503), Reply(400))  # a retry and a dead letter: every delivery series appears
        for _ in range(4):
            await running.poll(advance_ms=600_000)
        await running.service.worker.drain()
        running.service.metrics.api_error("server_error", 503)  # as a failed poll counts it (retries take seconds)
        async with session.get(running.url + "/metrics") as response:
            body = await response.read()
    assert b'benchwatch_api_errors_total{reason="server_error",status="503"}' in body and b'outcome="dead"' in body
    assert await _promtool_findings(body) == ""
    assert await _promtool_findings(b"# HELP bw_ms x\n# TYPE bw_ms counter\nbw_ms 1\n")  # it does find things


async def _promtool_findings(body: bytes) -> str:
    promtool = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=PIPE, stdout=PIPE, stderr=STDOUT
    )
    said, _ = await asyncio.wait_for(promtool.communicate(body), timeout=30)
    return f"exit {promtool.returncode}: {said.decode()}" if promtool.returncode or said else ""
