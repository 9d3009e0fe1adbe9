"""`python -m benchmarks [NAME ...] [--quick] [--json PATH]`: run benchmarks, print tables, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
from pathlib import Path
from typing import Any

from benchmarks import notify_latency

BENCHMARKS = {"notify-latency": notify_latency.run}


def main(argv: list[str] | None = None) -> int:
    """Run the named benchmarks (default: all)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], help="benchmarks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="a tiny run: checks the harness, measures little")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"machine": _machine()}
    for name in args.names or list(BENCHMARKS):
        results[name] = asyncio.run(BENCHMARKS[name](quick=args.quick))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _machine() -> dict[str, Any]:
    import os

    return {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}


if __name__ == "__main__":
    sys.exit(main())
