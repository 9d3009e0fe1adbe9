"""The operations kit's monitoring half holds against what the service exports: deploy/prometheus/alerts.yml passes
`promtool check rules` and its unit tests (`promtool test rules`), and every metric and label that the alerts and
deploy/grafana/benchwatch.json query is one the service's registry really has — read from `Metrics` itself, and
seen in a real /metrics scrape of a running service."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerFactory
from tests.lifecycle import add_jobs, write_config
from watcher.app.config import load_config
from watcher.app.service import POLL_JOB, Service
from watcher.core.clock import ManualClock
from watcher.simulator import Simulator, create_app
from watcher.web.metrics import Metrics

ROOT = Path(__file__).parent.parent
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "benchwatch.json"
PROMTOOL = "/usr/bin/promtool"
# What a query may use besides our series: Prometheus's own `up`, and the labels every scrape adds or PromQL makes.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
SCRAPE_LABELS = {"job", "instance", "le"}
_SERIES = re.compile(r"\b(benchwatch_\w+|up)\b\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def exported() -> dict[str, set[str]]:
    """Every series name the registry can expose, with its label names — each method called once so that every
    labelled family has a child to read its labels from."""
    metrics = Metrics()
    metrics.poll(0.1, ok=True)
    metrics.poll_cycle(1.0)
    metrics.api_error("timeout", None)
    metrics.events(["job.finished"])
    metrics.sync_deliveries({("hook", "dead", "client_error"): 1})
    metrics.cycle_skipped()
    series: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        names = {
            "counter": [f"{family.name}_total"],
            "histogram": [f"{family.name}_{part}" for part in ("bucket", "sum", "count")],
        }.get(family.type, [family.name])
        labels = {label for sample in family.samples for label in sample.labels} - {"le"}
        for name in names:
            series[name] = labels
    return series


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every alert expression and every dashboard target."""
    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    found = [(f"alert {rule['alert']}", str(rule["expr"])) for rule in rules]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        found += [(f"panel {panel['title']!r}", target["expr"]) for target in panel.get("targets", [])]
    return found


def test_the_kit_queries_something() -> None:
    used = {name for _, expr in queries() for name, _ in _SERIES.findall(expr)}
    assert len(queries()) >= 25
    # The dashboard shows cycles, latency, the outbox, deliveries and leases; the alerts cover what the docs name.
    for name in (
        "benchwatch_poll_cycle_duration_seconds_bucket", "benchwatch_poll_duration_seconds_bucket",
        "benchwatch_outbox_pending", "benchwatch_dead_letters", "benchwatch_notifications_total",
        "benchwatch_job_leases_held", "benchwatch_ready", "benchwatch_store_writable", "benchwatch_api_reachable",
        "benchwatch_poll_cycles_skipped_total", "up",
    ):  # fmt: skip
        assert name in used, name


@pytest.mark.parametrize(("where", "expr"), queries(), ids=[where for where, _ in queries()])
def test_every_series_and_label_queried_is_exported(where: str, expr: str) -> None:
    known = exported() | PROMETHEUS_SERIES
    used_labels: set[str] = set()
    for name, selector in _SERIES.findall(expr):
        assert name in known, f"{where}: {name} is not a series benchwatch exports"
        labels = set(_MATCHER.findall(selector))
        assert labels <= known[name] | SCRAPE_LABELS, f"{where}: {name} has no label {labels - known[name]}"
        used_labels |= known[name]
    for grouping in _GROUPING.findall(expr):
        by = {label.strip() for label in grouping.split(",") if label.strip()}
        assert by <= used_labels | SCRAPE_LABELS, f"{where}: no series here has {by - used_labels - SCRAPE_LABELS}"


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, check=False, cwd=ALERTS.parent
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    tested_alerts = {test["alertname"] for group in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
                     for test in group["alert_rule_test"]}  # fmt: skip
    assert tested_alerts == {rule["alert"] for rule in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]}


def test_the_dashboard_is_grafana_json_with_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "benchwatch" and dashboard["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["job"]["query"] == "benchwatch"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
            assert all('job="$job"' in target["expr"] for target in panel["targets"]), panel["title"]


async def test_a_real_scrape_has_every_series_the_kit_reads_and_counts_skipped_cycles(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    clock = ManualClock()
    sim = Simulator(seed=5, clock=clock, api_key="e2e-key")
    add_jobs(sim)
    api = str((await aiohttp_server(create_app(sim))).make_url("")).rstrip("/")
    config = write_config(tmp_path, api, "http://127.0.0.1:9/hook", watch="poll_interval: 20s")

    async def sleep(seconds: float) -> None:
        clock.advance(round(seconds * 1000))

    service = Service(load_config(config), clock=clock, sleep=sleep)
    async with service.started():
        await service.poll_once()
        service.scheduler_event(JobSubmissionEvent(EVENT_JOB_MAX_INSTANCES, POLL_JOB, "default", []))
        assert service.status is not None
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{service.status.port}/metrics") as response,
        ):
            text = await response.text()
    samples: dict[str, Any] = {
        sample.name: sample.value for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert samples["benchwatch_ready"] == 1.0 and samples["benchwatch_store_writable"] == 1.0
    assert samples["benchwatch_poll_interval_seconds"] == 20.0
    assert samples["benchwatch_poll_cycles_skipped_total"] == 1.0
    unlabelled = {name for name, labels in exported().items() if not labels}
    queried = {name for _, expr in queries() for name, _ in _SERIES.findall(expr)}
    assert queried & unlabelled <= set(samples), (queried & unlabelled) - set(samples)
