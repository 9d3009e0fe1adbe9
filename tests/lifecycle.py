"""What the service tests share: two simulated jobs, the config that watches them, and notifications compared by
content — expected ones from the simulated jobs' own final outcomes, received ones from the webhook receiver (both
counted by `benchmarks/told.py`, as the fault matrix counts them)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from benchmarks.told import Key, expected_keys, keys_of
from tests.fakes.webhook import Delivery, WebhookReceiver
from watcher.simulator import SimAgent, SimJobSpec, Simulator

SECRET = "whsec_ZTJlLXRlc3Qtc2VjcmV0LWZvci1iZW5jaHdhdGNo"
API_KEY = "e2e-key"
CONCURRENCY = 4
AGENTS = [SimAgent(name="alpha", model_name="m1", pass_rate=0.7), SimAgent(name="beta", model_name="m2", pass_rate=0.5)]
SPECS = [
    SimJobSpec(name="e2e-complete", n_scenarios=6, agents=AGENTS, fail_rate=0.25, timeout_rate=0.1, init_s=240,
               scenario_duration_s=(60, 240), scenario_timeout_s=300),
    SimJobSpec(name="e2e-setup-fails", n_scenarios=4, agents=AGENTS[:1], outcome="failed", end_after_s=200,
               fail_rate=0.0, timeout_rate=0.0, init_s=240),
]  # fmt: skip
RULES = (
    "rules:\n  - {name: finished, on: job.finished, notify: hook}\n  - {name: runs, on: run.finished, notify: hook}\n"
)
FAILURES_RULE = "  - {name: failures, on: [scenario.failed, scenario.timed_out], notify: hook, group_by: [event.id]}\n"


def write_config(folder: Path, api: str, hook: str, *, watch: str = "poll_interval: 1s", rules: str = "") -> Path:
    """benchwatch.yaml watching the `e2e-*` jobs, with a signed webhook and three rules (`rules` replaces the
    third, the failures one)."""
    path = folder / "benchwatch.yaml"
    path.write_text(
        f"runloop: {{base_url: '{api}', api_key: {API_KEY}}}\n"
        f"watch: {{discover: {{name: 'e2e-*'}}, {watch}, scenario_runs: true, stall_after: 1h}}\n"
        "state: {path: ./state.db}\nhttp: {port: 0}\n"
        f"notifiers:\n  hook: {{type: webhook, url: '{hook}', secret: '{SECRET}', concurrency: {CONCURRENCY}}}\n"
        + RULES
        + (rules or FAILURES_RULE)
    )
    return path


def add_jobs(sim: Simulator) -> None:
    """The two jobs every service test watches."""
    for spec in SPECS:
        sim.add_job(spec)


def all_finished(sim: Simulator) -> bool:
    """Every simulated job has ended (as the API shows it now)."""
    return all(sim.job_view(plan.job_id)["state"] in ("completed", "failed") for plan in sim.jobs())


expected = expected_keys  # the service tests' name: what the simulated jobs' outcomes call for


def unique(receiver: WebhookReceiver) -> list[Delivery]:
    """The deliveries, each webhook-id once (a receiver dedupes on it)."""
    seen: set[str | None] = set()
    first = []
    for delivery in receiver.deliveries:
        if delivery.webhook_id not in seen:
            seen.add(delivery.webhook_id)
            first.append(delivery)
    return first


def received(receiver: WebhookReceiver) -> Counter[Key]:
    """What the receiver was told, repeats of a webhook-id counted once."""
    return Counter(key for delivery in unique(receiver) for key in keys_of(delivery.payload))


def difference(got: Counter[Key], wanted: Counter[Key]) -> str:
    """What is missing and what is extra, for a failure message."""
    missing, extra = wanted - got, got - wanted
    return f"{got.total()} of {wanted.total()} notifications arrived; missing {dict(missing)}; extra {dict(extra)}"
