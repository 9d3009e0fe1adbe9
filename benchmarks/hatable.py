"""The `ha` benchmark's table: per workload, the replicas' CPU and round trips, the failover, the unchanged-poll
ratio, and each target's verdict."""

from __future__ import annotations

from typing import Any


def per_interval(window: dict[str, Any]) -> list[float]:
    """Each replica's CPU seconds per second of the window."""
    return [cpu_s / window["seconds"] for cpu_s in window["cpu_s"]]


def per_changed_job(window: dict[str, Any]) -> float | None:
    """Database transactions per changed job, all replicas together."""
    if window.get("transactions") is None or not window["changed_jobs"]:
        return None
    return float(window["transactions"]) / window["changed_jobs"]


def replicas_ratio(figures: dict[str, Any], what: str, setup: str = "replicas_3") -> float | None:
    """Three replicas' transactions (`what` "transactions") or CPU seconds ("cpu"), all together, over one
    replica's, in windows of the very same changes (`figures`: a workload's, or one of its rounds); `setup`
    "shards_3": the three shards' (the control: three processes, nothing shared), where measured."""
    if setup not in figures:
        return None
    one, three = (_total(figures[key], what) for key in ("replicas_1", setup))
    return None if one is None or three is None or not one else round(three / one, 3)


def _total(window: dict[str, Any], what: str) -> float | None:
    return float(sum(window["cpu_s"])) if what == "cpu" else window["transactions"]


JOB_GET = "GET /v1/benchmark_jobs/{id}"


def polls_ratios(figures: dict[str, Any]) -> tuple[float, float] | None:
    """Three replicas' job polls (GETs of one job) over one replica's in the same changes, and their CPU per job
    poll over one replica's: where one replica cannot keep the poll interval (200 changing jobs a second asked),
    the faster setup polls more often and is charged for it per changed job, not per poll. None: not counted."""
    polls = [(figures[key].get("requests_by_kind") or {}).get(JOB_GET) for key in ("replicas_1", "replicas_3")]
    cpu = [sum(figures[key]["cpu_s"]) for key in ("replicas_1", "replicas_3")]
    if not polls[0] or not polls[1] or not cpu[0]:
        return None
    return round(polls[1] / polls[0], 3), round((cpu[1] / polls[1]) / (cpu[0] / polls[0]), 3)


def switches_ratios(figures: dict[str, Any]) -> tuple[float, int, int] | None:
    """Three replicas' context switches over one replica's in the same changes, and both setups' moves to another
    CPU: the same system calls made by three processes that each have a third of the work wake more often for
    them (docs/performance.md, "Replicas that add up"). None: not counted."""
    one, three = figures["replicas_1"], figures["replicas_3"]
    if not one.get("context_switches"):
        return None
    ratio = round(three.get("context_switches", 0) / one["context_switches"], 3)
    return ratio, one.get("migrations", 0), three.get("migrations", 0)


def _times(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio:.2f}×"


def print_shards(figures: dict[str, Any]) -> None:
    """The control: what three processes with nothing shared cost over one replica on the same changes, and what
    three replicas cost over them (sharing one database)."""
    if "shards_3" not in figures:
        return
    for what, label in (("cpu", "CPU"), ("transactions", "transactions")):
        shards, replicas = (replicas_ratio(figures, what, setup) for setup in ("shards_3", "replicas_3"))
        coordination = None if shards is None or replicas is None else round(replicas / shards, 3)
        print(
            f"  3 shards' {label} together ÷ 1 replica's (nothing shared: the control): {_times(shards)};"
            f" 3 replicas ÷ 3 shards (what sharing costs): {_times(coordination)}"
        )


def verdict(target: dict[str, Any]) -> str:
    """'met (0.42×)' or 'MISSED (1.7×)' against the limit; 'not measured' without a figure."""
    if target["value"] is None:
        return "not measured"
    return f"{'met' if target['met'] else 'MISSED'} ({target['ratio']:.2f}× the limit)"


def _replica_row(label: str, window: dict[str, Any]) -> str:
    cpu = ", ".join(f"{share:.3f}" for share in per_interval(window))
    trips = per_changed_job(window)
    trips_text = "—" if trips is None else f"{trips:.1f}"
    return (
        f"  {label:<22} {cpu:<24} {trips_text:>12} {window['changed_jobs']:>8} {window['transactions'] or 0:>8}"
        f" {window['requests']:>9}"
    )


def _print_per_poll(figures: dict[str, Any]) -> None:
    """What the CPU ratio is made of: job polls, CPU per poll, and the wake-ups behind it."""
    if (ratios := polls_ratios(figures)) is not None:
        print(
            f"  3 replicas' job polls ÷ 1 replica's: {ratios[0]:.2f}×; their CPU per job poll ÷ 1 replica's:"
            f" {ratios[1]:.2f}×"
        )
    if (switched := switches_ratios(figures)) is not None:
        print(
            f"  3 replicas' context switches ÷ 1 replica's: {switched[0]:.2f}×; moves to another CPU, 1 replica /"
            f" 3 replicas: {switched[1]} / {switched[2]}"
        )


def _print_rounds(rounds: list[dict[str, Any]]) -> None:
    """Each round's ratios (the rounds alternate the setups)."""
    if len(rounds) < 2:
        return
    for what, label in (("transactions", "transactions"), ("cpu", "CPU")):
        each = ", ".join(_times(replicas_ratio(r, what)) for r in rounds)
        print(f"  {label} per round (1, 3, 1, 3, … alternated; shards after each pair): {each}")
    each = ", ".join(
        "—" if ratios is None else f"{ratios[0]:.2f}× / {ratios[1]:.2f}×"
        for ratios in (polls_ratios(r) for r in rounds)
    )
    print(f"  job polls / CPU per job poll per round, 3 replicas ÷ 1: {each}")
    if all("shards_3" in r for r in rounds):
        each = ", ".join(_times(replicas_ratio(r, "cpu", "shards_3")) for r in rounds)
        print(f"  CPU per round, 3 shards ÷ 1 replica: {each}")
    taken = ", ".join(f"{r['replicas_1'].get('takeovers')} / {r['replicas_3'].get('takeovers')}" for r in rounds)
    print(f"  leases taken per round, 1 replica / 3 replicas: {taken}")


def print_figures(figures: dict[str, Any]) -> None:
    """Print one workload's figures."""
    print(f"\nha: {figures['workload']} — {figures['title']}")
    print(f"  {'':<22} {'CPU s/s per replica':<24} {'xacts/chg job':>12} {'chg jobs':>8} {'xacts':>8} {'requests':>9}")
    print(_replica_row("PostgreSQL, 1 replica", figures["replicas_1"]))
    print(_replica_row("PostgreSQL, 3 replicas", figures["replicas_3"]))
    if "shards_3" in figures:
        print(_replica_row("PostgreSQL, 3 shards", figures["shards_3"]))
    for name, what in (("replicas_transactions_ratio", "transactions"), ("replicas_cpu_ratio", "CPU")):
        target = figures["targets"].get(name)
        if target is not None:
            print(
                f"  3 replicas' {what} together ÷ 1 replica's, on the same changes: {_times(target['value'])}"
                f" (target ≤ {target['limit']}×): {verdict(target)}"
            )
    print_shards(figures)
    _print_per_poll(figures)
    _print_rounds(figures.get("rounds", []))
    failover = figures["failover"]
    targets = figures["targets"]
    if failover["unpolled"]:
        took = f"{failover['unpolled']} of them not polled within {5 * failover['bound_s']} s"
    elif failover["jobs"]:
        took = f"all polled by another within {failover['seconds']:.2f} s"
    else:
        took = "none running"
    print(
        f"  failover (kill -9 of 1 of 3): its {failover['jobs']} running jobs: {took}"
        f" (bound {failover['bound_s']} s = lease TTL + poll interval): {verdict(targets['failover_s'])}"
    )
    for backend in ("sqlite", "postgres"):
        window = figures[f"{backend}_unchanged"]
        ratio = window["cpu_vs_orjson"]
        ratio_text = "—" if ratio is None else f"{ratio:.2f}×"
        print(
            f"  unchanged, {backend:<8}: whole-process CPU {window['cpu_s'][0]:.3f} s for {window['bytes']:,} bytes,"
            f" orjson.loads {window['orjson_loads_s']:.4f} s → {ratio_text} (target ≤ 0.3×):"
            f" {verdict(targets[f'{backend}_unchanged_vs_orjson'])}"
        )
        receive = window.get("receive_vs_orjson")
        if receive is not None:
            print(
                f"  {'':<19}  floor: receiving the same responses with aiohttp alone {window['receive_s']:.4f} s"
                f" = {receive:.2f}× orjson.loads"
            )
