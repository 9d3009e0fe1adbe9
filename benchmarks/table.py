"""The printed table of a poll-cost workload: one row per poller and kind of cycle, then the targets."""

from __future__ import annotations

from typing import Any

_COLUMNS = ("cpu s/cycle", "cpu ms/job", "cpu ms/MB", "wall s/cycle", "req/cycle", "MB/cycle", "events/cpu s")
_LABEL = 34


def print_figures(figures: dict[str, Any]) -> None:
    """The whole table of one workload."""
    workload = figures["workload"]
    print(f"poll-{workload['name']}: {workload['title']}")
    print("  " + " " * _LABEL + "".join(f"{c:>14}" for c in _COLUMNS))
    for kind in ("unchanged", "changed"):
        _rows(kind, figures[kind])
    _notes(figures)
    if "control" in figures:
        control = figures["control"]
        print(f"  control ({control['workload']['title']}):")
        for kind in ("unchanged", "changed"):
            _row(f"benchwatch, {kind}", _watcher_cells(control[kind]))
        for kind in ("unchanged", "changed"):
            k = figures[kind]
            print(
                f"  terminal jobs, {kind}: {_cell(k['terminal_requests'])} requests, cpu s {_cell(k['terminal_cpu_s'])}"
                f" (noise bound {_cell(k['terminal_cpu_tolerance_s'])}), garbage collector {_cell(k['terminal_gc_s'])}"
            )
    print("  targets:")
    for name, target in figures["targets"].items():
        shown = "—" if target["value"] is None else f"{target['value']:g}"
        print(f"    {name:<36}{shown:>12}  ({target['op']} {target['limit']:g})  {verdict(target)}")
    print()


def _rows(kind: str, k: dict[str, Any]) -> None:
    _row(f"benchwatch, {kind}", _watcher_cells(k))
    mb = k["mb"]
    for label, cpu_s in (
        ("floor: HTTP receive (aiohttp)", k["floor_recv_cpu_s"]),
        ("floor: orjson.loads", k["floor_parse_s"]),
        ("floor: blake2b", k["floor_hash_s"]),
    ):
        _row(f"  {label}", [cpu_s, None, _per(cpu_s, mb), None, None, None, None])
    if k["naive_cycles"]:
        naive_cells = [k["naive_cpu_s"], _per(k["naive_cpu_s"], k["polled"]), _per(k["naive_cpu_s"], mb)]
        _row(
            f"  naive SDK + DeepDiff ({k['naive_cycles']} cycles)", [*naive_cells, k["naive_wall_s"], None, None, None]
        )


def _watcher_cells(k: dict[str, Any]) -> list[float | None]:
    return [
        k["cpu_s"], k["cpu_ms_per_job"], k["cpu_ms_per_mb"], k["wall_s"], k["requests"], k["mb"], k["events_per_cpu_s"]
    ]  # fmt: skip


def _row(label: str, cells: list[float | None]) -> None:
    print("  " + f"{label:<{_LABEL}}" + "".join(f"{_cell(v):>14}" for v in cells))


def _notes(figures: dict[str, Any]) -> None:
    changed, latency = figures["changed"], figures["latency"]
    share = changed["share_scenarios_finished"]
    print(
        f"  changed cycles: {share * 100 if share is not None else 0:.1f} % of {changed['scenario_records'] or 0:,.0f} "
        f"scenario records finished per cycle; {changed['runs_finished'] or 0:g} runs and "
        f"{changed['jobs_finished'] or 0:g} jobs finished per cycle; {changed['events'] or 0:g} events, "
        f"{changed['notifications'] or 0:g} notifications per cycle"
    )
    print(
        f"  detection latency: manual cycles p50 {_cell(latency['manual_p50_ms'])} ms, p99 "
        f"{_cell(latency['manual_p99_ms'])} ms; service polling every {latency['poll_interval_ms'] / 1000:g} s: "
        f"p50 {_cell(latency['service_p50_ms'])} ms, p99 {_cell(latency['service_p99_ms'])} ms "
        f"({latency['service_samples']} job samples)"
    )
    gc_line = ", ".join(f"{kind} {_cell(figures[kind]['gc_s'])}" for kind in ("unchanged", "changed"))
    print(f"  garbage collector: cpu s/cycle {gc_line}")
    memory = figures["memory"]
    print(
        f"  peak RSS: {_cell(figures['peak_rss_mb'])} MB (startup {_cell(memory['startup_peak_rss_mb'])}, "
        f"steady {_cell(memory['steady_peak_rss_mb'])}); naive poller {_cell(changed['naive_peak_rss_mb'])} MB"
    )
    if not (figures["unchanged"]["floor_same_bytes"] and changed["floor_same_bytes"]):
        print("  WARNING: the floor did not receive the same bytes as the watcher")
    failed = figures["unchanged"]["failed"] + changed["failed"]
    if failed:
        print(f"  WARNING: {failed} job polls failed in the measured cycles")


def _per(value: float | None, per: float | None) -> float | None:
    return None if value is None or not per else value / per * 1000


def _cell(value: float | None) -> str:
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def verdict(target: dict[str, Any]) -> str:
    """`met`, `MISSED (by …)`, `not judged here` or `no figure`."""
    value, limit = target["value"], target["limit"]
    if not target["judged"]:
        return "(not judged on this workload)"
    if value is None:
        return "no figure"
    if target["met"]:
        return "met"
    if target["op"] == "<=":
        by = f"{value / limit:.1f}× the limit" if limit > 0 else f"{value:g} over"
    else:
        by = f"{limit / value:.1f}× short" if value > 0 else "no gain"
    return f"MISSED ({by})"


def print_workload(figures: dict[str, Any]) -> dict[str, Any]:
    """Print the table of one workload (and its control); return the figures."""
    print_figures(figures)
    return figures
