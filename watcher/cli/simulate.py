"""`benchwatch simulate`: the simulated Runloop API as a server."""

from __future__ import annotations

import argparse
import random

from aiohttp import web

from watcher.cli.errors import UsageError
from watcher.cli.signals import wait_for_stop_signal
from watcher.core.clock import Clock, ManualClock, ScaledClock, SystemClock
from watcher.simulator import Faults, SimJobSpec, Simulator, create_app, demo_specs


async def simulate(args: argparse.Namespace) -> int:
    """`benchwatch simulate`: serve the simulated API until interrupted."""
    clock: Clock = ManualClock(SystemClock().now_ms()) if args.manual_clock else ScaledClock(speed=args.speed)
    sim = Simulator(seed=args.seed, clock=clock, api_key=args.api_key)
    if not args.no_demo_jobs:
        for spec in demo_specs():
            sim.add_job(spec)
    extra_rng = random.Random(f"{args.seed}:extra-jobs")
    for _ in range(args.jobs):
        sim.add_job(SimJobSpec(n_scenarios=extra_rng.randint(5, 50), fail_rate=round(extra_rng.uniform(0, 0.2), 2)))
    sim.set_faults(
        Faults(
            rate_429=args.rate_429,
            rate_500=args.rate_500,
            rate_503=args.rate_503,
            rate_truncated=args.rate_truncated,
            rate_malformed=args.rate_malformed,
            latency_ms=args.latency_ms,
        )
    )
    runner = web.AppRunner(create_app(sim), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, args.host, args.port).start()
        except OSError as exc:  # the port is taken, the address is not this machine's
            raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
        base_url = f"http://{args.host}:{args.port}"
        pace = "manual clock: POST /_sim/clock moves it" if args.manual_clock else f"{args.speed:g}x real time"
        print(f"Runloop simulator on {base_url}  (seed {args.seed}, {pace})")
        print(f"  try:  RUNLOOP_BASE_URL={base_url} benchwatch jobs")
        for plan in sim.jobs():
            print(f"  {plan.job_id}  {plan.name}")
        print("Ctrl-C to stop.", flush=True)
        await wait_for_stop_signal()
    finally:
        await runner.cleanup()
    return 0
