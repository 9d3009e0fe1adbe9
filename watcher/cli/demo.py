"""`benchwatch demo`: the simulator in-process and a watch over its demo jobs."""

from __future__ import annotations

import argparse

from watcher.app.demo import run_demo


async def demo(args: argparse.Namespace) -> int:
    """`benchwatch demo`: the simulator in-process and a watch over its demo jobs."""
    return await run_demo(seed=args.seed, speed=args.speed, interval_s=args.interval, max_seconds=args.max_seconds)
