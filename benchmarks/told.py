"""What simulated jobs call for and what a receiver was told, compared by content: one key per notified fact —
(rule, job name, what, scenario). The service tests (`tests/lifecycle.py`) and the fault matrix (`chaos`) count
with these same two functions, so they cannot drift apart."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from typing import Any, Final

from watcher.simulator import Simulator

Key = tuple[str, str, str, str]
TERMINAL: Final = frozenset({"completed", "failed", "cancelled", "timeout"})
_FAILURE_KINDS: Final = {"FAILED": "scenario.failed", "TIMEOUT": "scenario.timed_out"}


def expected_keys(sim: Simulator, *, skip: Collection[str] = ()) -> Counter[Key]:
    """One notification per finished job, per finished run, per failed or timed-out scenario — by the jobs as the
    API serves them now (a hostile name included); the jobs in `skip` (served malformed) call for nothing."""
    keys: Counter[Key] = Counter()
    for plan in sim.jobs():
        if plan.job_id in skip:
            continue
        view = sim.job_view(plan.job_id)
        name = view["name"]
        if view["state"] in TERMINAL:
            keys[("finished", name, view["state"], "")] += 1
        for outcome in view["benchmark_outcomes"] or []:
            keys[("runs", name, outcome["agent_name"], "")] += 1
            for scenario in outcome["scenario_outcomes"]:
                kind = _FAILURE_KINDS.get(scenario["state"])
                if kind:
                    keys[("failures", name, kind, scenario["scenario_definition_id"])] += 1
    return keys


def keys_of(payload: dict[str, Any]) -> list[Key]:
    """What a notification told: one key per event it carries (the `finished` and `runs` rules by name; any other
    rule tells failures, whatever it is called)."""
    rule = payload["rule"]
    keys = []
    for event in payload["events"]:
        if rule == "finished":
            keys.append((rule, event["job_name"], event["state"], ""))
        elif rule == "runs":
            keys.append((rule, event["job_name"], event["agent_name"], ""))
        else:
            keys.append(("failures", event["job_name"], event["kind"], event["scenario_definition_id"]))
    return keys
