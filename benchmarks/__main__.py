"""`python -m benchmarks [NAME ...] [--quick] [--save | --json PATH]`: run benchmarks, print tables, write JSON.

`--save` keeps one file per kind of run — `benchmarks/results-KIND-latest.json`, replaced by the next run of that
kind; the figures of older runs are in docs/performance.md (and their files in git history)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

from benchmarks import chaos, delivery, notify_latency, poll_cost, replicas, startup, unchanged

BENCHMARKS = {
    "notify-latency": notify_latency.run,
    "poll-small": poll_cost.run_small,
    "poll-many": poll_cost.run_many,
    "poll-large": poll_cost.run_large,
    "startup": startup.run,
    "unchanged": unchanged.run,
}
# Run only when named: the fault matrix is a reliability check, not a speed figure (its quick form is a test);
# `ha` and `delivery` need the local PostgreSQL server.
ON_DEMAND = {"chaos": chaos.run, "delivery": delivery.run, "ha": replicas.run}
POLL_WORKLOADS: Final = ("poll-small", "poll-many", "poll-large")
RESULTS_FOLDER: Final = Path(__file__).parent


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names",
        nargs="*",
        choices=[*BENCHMARKS, *ON_DEMAND, []],
        help="benchmarks to run (default: all but chaos, delivery and ha)",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run: checks the harness, measures little")
    written = parser.add_mutually_exclusive_group()
    written.add_argument("--json", type=Path, help="also write the results here")
    written.add_argument(
        "--save",
        action="store_true",
        help="also write the results to benchmarks/results-KIND-latest.json, replacing the last run of that kind",
    )
    args = parser.parse_args(argv)
    if args.save and args.quick:
        parser.error("--save keeps measured figures: a --quick run measures little")
    names = args.names or list(BENCHMARKS)
    out = latest_path(args.names) if args.save else args.json
    results: dict[str, Any] = {"machine": _machine(), "quick": args.quick}
    for name in names:
        results[name] = asyncio.run({**BENCHMARKS, **ON_DEMAND}[name](quick=args.quick))
        if out is not None:  # after each one: a long run that fails later keeps what it measured
            out.write_text(json.dumps(results, indent=2) + "\n")
    if out is not None:
        print(f"results written to {out}")
    return 0


def latest_path(names: list[str]) -> Path:
    """Where `--save` writes a run of `names`: one file per kind — `poll` for the three poll workloads together,
    `all` for the default run, else the names without their `poll-` prefix (`many`, `ha`, `startup`, …)."""
    if not names:
        kind = "all"
    elif sorted(names) == sorted(POLL_WORKLOADS):
        kind = "poll"
    else:
        kind = "-".join(name.removeprefix("poll-") for name in names)
    return RESULTS_FOLDER / f"results-{kind}-latest.json"


def _machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "commit": _commit(),
    }


def _commit() -> str | None:
    """The code measured: HEAD, marked `+dirty` when the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


if __name__ == "__main__":
    sys.exit(main())
