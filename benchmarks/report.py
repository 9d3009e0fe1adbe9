"""The poll-cost figures: per-kind means of the measured cycles, the ratios the targets of issue 8 are judged on,
and the table printed for each workload."""

from __future__ import annotations

from typing import Any

from benchmarks.measure import mean, percentile, stderr_of_mean
from benchmarks.rig import POLL_INTERVAL_S
from benchmarks.workloads import Workload

MB = 1_000_000
RSS_LIMIT_MB = 300.0
LATENCY_SLACK_MS = 100.0
# "No CPU": the difference from the control is within its noise: 5 % of the control's CPU (or 1 ms), or, when
# the cycles vary more than that, twice the standard error of the difference of the two means.
TERMINAL_CPU_TOLERANCE = 0.05


def summarize(
    workload: Workload, cycles: list[dict[str, Any]], memory: dict[str, Any], service_latencies_s: list[float]
) -> dict[str, Any]:
    """The figures of one workload."""
    kinds = {kind: _kind([c for c in cycles if c["kind"] == kind]) for kind in ("unchanged", "changed")}
    service_ms = [s * 1000 for s in service_latencies_s]
    peaks = [p for p in (memory["startup_peak_rss_mb"], memory["steady_peak_rss_mb"]) if p is not None]
    figures: dict[str, Any] = {
        "workload": {"name": workload.name, "title": workload.title, "batches": list(workload.batches)},
        **kinds,
        "peak_rss_mb": round(max(peaks), 1) if peaks else None,
        "latency": {
            "manual_p50_ms": _round(percentile(kinds["changed"]["latencies_ms"], 0.5)),
            "manual_p99_ms": _round(percentile(kinds["changed"]["latencies_ms"], 0.99)),
            "service_p50_ms": _round(percentile(service_ms, 0.5)),
            "service_p99_ms": _round(percentile(service_ms, 0.99)),
            "service_samples": len(service_ms),
            "poll_interval_ms": POLL_INTERVAL_S * 1000,
        },
        "memory": memory,
        "cycles": cycles,
    }
    figures["targets"] = _targets(workload.name, figures)
    return figures


def _kind(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    def avg(pick: Any) -> float | None:
        return mean([float(pick(c)) for c in cycles if pick(c) is not None])

    naive = [c["naive"] for c in cycles if c["naive"] is not None]
    cpu_s, polled, mb = avg(lambda c: c["cpu_s"]), avg(lambda c: c["polled"]), avg(lambda c: c["bytes"] / MB)
    figures = {
        "cycles": len(cycles),
        "cpu_s": cpu_s,
        "cpu_poll_s": avg(lambda c: c["cpu_poll_s"]),
        "cpu_s_stderr": stderr_of_mean([c["cpu_s"] for c in cycles]),
        "gc_s": avg(lambda c: c.get("gc_s", 0.0)),
        "wall_s": avg(lambda c: c["wall_s"]),
        "requests": avg(lambda c: c["sim_requests"]),
        "mb": mb,
        "polled": polled,
        "events": avg(lambda c: c["events"]),
        "notifications": avg(lambda c: c["notifications"]),
        "failed": sum(c["failed"] for c in cycles),
        "cpu_ms_per_job": _ratio(cpu_s, polled, 1000),
        "cpu_ms_per_mb": _ratio(cpu_s, mb, 1000),
        "events_per_cpu_s": _ratio(avg(lambda c: c["events"]), cpu_s),
        "floor_recv_cpu_s": avg(lambda c: c["floor"]["recv_cpu_s"]),
        "floor_parse_s": avg(lambda c: c["floor"]["parse_s"]),
        "floor_hash_s": avg(lambda c: c["floor"]["hash_s"]),
        "floor_same_bytes": all(c["floor"]["bytes"] == c["bytes"] for c in cycles),
        "naive_cycles": len(naive),
        "naive_cpu_s": mean([n["cpu_s"] for n in naive]),
        "naive_wall_s": mean([n["wall_s"] for n in naive]),
        "naive_peak_rss_mb": max((n["peak_rss_mb"] or 0 for n in naive), default=None),
        "scenario_records": avg(lambda c: c["floor"]["scenario_records"]),
        "share_scenarios_finished": _ratio(
            avg(lambda c: c["progress"]["scenario_runs_finished"]), avg(lambda c: c["floor"]["scenario_records"])
        ),
        "runs_finished": avg(lambda c: c["progress"]["runs_finished"]),
        "jobs_finished": avg(lambda c: c["progress"]["jobs_terminal"]),
        "latencies_ms": [ms for c in cycles for ms in c["latencies_ms"]],
    }
    return {key: _round(value) if isinstance(value, float) else value for key, value in figures.items()}


def _targets(name: str, figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    unchanged, changed, latency = figures["unchanged"], figures["changed"], figures["latency"]
    targets = {
        "unchanged_cost_vs_parse": _target(_ratio(unchanged["cpu_s"], unchanged["floor_parse_s"]), "<=", 0.05),
        "changed_cost_vs_orjson": _target(_ratio(changed["cpu_s"], changed["floor_parse_s"]), "<=", 2.0),
        "naive_vs_benchwatch_cpu_unchanged": _target(
            _ratio(unchanged["naive_cpu_s"], unchanged["cpu_s"]), ">=", 10.0, judged=name == "large"
        ),
        "naive_vs_benchwatch_cpu_changed": _target(
            _ratio(changed["naive_cpu_s"], changed["cpu_s"]), ">=", 10.0, judged=name == "large"
        ),
        "detection_latency_p99_ms": _target(
            latency["service_p99_ms"], "<=", latency["poll_interval_ms"] + LATENCY_SLACK_MS
        ),
        "peak_rss_mb": _target(figures["peak_rss_mb"], "<=", RSS_LIMIT_MB, judged=name in ("large", "many")),
    }
    return targets


def add_terminal_cost(figures: dict[str, Any]) -> None:
    """What the terminal jobs of `many` cost per cycle: `many` minus its control (the running jobs alone)."""
    control = figures["control"]
    for kind in ("unchanged", "changed"):
        extra_requests = _minus(figures[kind]["requests"], control[kind]["requests"])
        extra_cpu_s = _minus(figures[kind]["cpu_s"], control[kind]["cpu_s"])
        errors = [figures[kind].get("cpu_s_stderr"), control[kind].get("cpu_s_stderr")]
        noise_s = 2 * sum(error**2 for error in errors if error is not None) ** 0.5
        tolerance_s = max(0.001, TERMINAL_CPU_TOLERANCE * (control[kind]["cpu_s"] or 0.0), noise_s)
        figures[kind]["terminal_requests"] = extra_requests
        figures[kind]["terminal_cpu_s"] = extra_cpu_s
        figures[kind]["terminal_cpu_tolerance_s"] = _round(tolerance_s)
        figures[kind]["terminal_gc_s"] = _minus(figures[kind]["gc_s"], control[kind]["gc_s"])
        figures["targets"][f"terminal_requests_{kind}"] = _target(extra_requests, "<=", 0.0)
        figures["targets"][f"terminal_cpu_s_{kind}"] = _target(extra_cpu_s, "<=", _round(tolerance_s))


def _target(value: float | None, op: str, limit: float, *, judged: bool = True) -> dict[str, Any]:
    met = None
    if judged and value is not None:
        met = value <= limit if op == "<=" else value >= limit
    return {"value": _round(value), "op": op, "limit": limit, "judged": judged, "met": met}


def _ratio(top: float | None, bottom: float | None, scale: float = 1.0) -> float | None:
    if top is None or not bottom:
        return None
    return top / bottom * scale


def _minus(left: float | None, right: float | None) -> float | None:
    return None if left is None or right is None else _round(left - right)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6 if abs(value) < 1 else 3)
