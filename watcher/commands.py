"""What each `benchwatch` subcommand does, given its parsed arguments; returns the exit code."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time

from aiohttp import web

from watcher.client import RunloopClient
from watcher.clock import Clock, ManualClock, ScaledClock, SystemClock
from watcher.config import load_config
from watcher.models import BenchmarkJobView
from watcher.simulator import Faults, SimJobSpec, Simulator, create_app, demo_specs


class UsageError(Exception):
    """Bad input from the user: exit code 2, one line."""


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
        await web.TCPSite(runner, args.host, args.port).start()
        base_url = f"http://{args.host}:{args.port}"
        pace = "manual clock: POST /_sim/clock moves it" if args.manual_clock else f"{args.speed:g}x real time"
        print(f"Runloop simulator on {base_url}  (seed {args.seed}, {pace})")
        print(f"  try:  RUNLOOP_BASE_URL={base_url} benchwatch jobs")
        for plan in sim.jobs():
            print(f"  {plan.job_id}  {plan.name}")
        print("Ctrl-C to stop.", flush=True)
        await _wait_for_stop_signal()
    finally:
        await runner.cleanup()
    return 0


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (instead of KeyboardInterrupt), for an orderly stop."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _wait_for_stop_signal() -> None:
    await stop_on_signals().wait()


async def run_service(args: argparse.Namespace) -> int:
    """`benchwatch run --config CONFIG`: the watcher, until SIGTERM or SIGINT."""
    import logging
    import os

    from watcher.logs import configure_logging, secrets_of
    from watcher.service import Service

    loaded = load_config(args.config)
    watch = loaded.config.watch
    if not watch.jobs and watch.discover is None:
        raise UsageError(f"{args.config}: nothing to watch: set watch.jobs or watch.discover")
    secrets = [*secrets_of(loaded.config), os.environ.get("RUNLOOP_API_KEY", "")]
    configure_logging(fmt=args.log_format, level=logging.DEBUG if args.verbose else logging.INFO, secrets=secrets)
    stop = stop_on_signals()
    return await Service(loaded).run(stop)


async def list_jobs(args: argparse.Namespace) -> int:
    """`benchwatch jobs`: a table of jobs, newest first."""
    async with RunloopClient(base_url=args.base_url) as client:
        shown = 0
        async for job in client.iter_jobs(name=args.name, search=args.search, page_size=min(max(args.limit, 1), 5000)):
            if shown >= args.limit:
                break
            print(_job_line(job))
            shown += 1
    if shown == 0:
        print("no jobs", file=sys.stderr)
    return 0


async def show_job(args: argparse.Namespace) -> int:
    """`benchwatch job ID`: one job as JSON."""
    async with RunloopClient(base_url=args.base_url) as client:
        job = await client.get_job(args.job_id)
    print(json.dumps(job.model_dump(mode="json"), indent=2))
    return 0


def _job_line(job: BenchmarkJobView) -> str:
    outcomes = job.benchmark_outcomes or ()
    done = sum(o.n_completed + o.n_failed + o.n_timeout for o in outcomes)
    expected = job.job_spec.n_expected if job.job_spec else 0
    created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(job.create_time_ms / 1000))
    return f"{job.id}  {job.state:<12} {created}Z  {done:>4}/{expected:<4} {job.name}"


async def replay(args: argparse.Namespace) -> int:
    """`benchwatch replay FILE`: events of recorded snapshots, as JSON lines on stdout."""
    from watcher.replay import replay as replay_file

    config = load_config(args.config) if args.config is not None else None
    await replay_file(args.file, sys.stdout, state=args.state, config=config)
    return 0


async def check(args: argparse.Namespace) -> int:
    """`benchwatch check CONFIG`: validate, then describe notifiers, rules and silences."""
    from rules.describe import describe_rule, describe_silence

    loaded = load_config(args.config)
    config = loaded.config
    print(f"{args.config}: OK")
    print(f"notifiers ({len(config.notifiers)}):")
    for name, notifier in config.notifiers.items():
        print(f"  {name} ({notifier.type}): {notifier.destination()}")
    print(f"rules ({len(config.rules)}):")
    for rule in config.rules:
        print(f"  {describe_rule(rule)}")
    if config.silences:
        print(f"silences ({len(config.silences)}):")
        for silence in config.silences:
            print(f"  {describe_silence(silence)}")
    unused = sorted(set(config.notifiers) - {name for rule in config.rules for name in rule.notify})
    if unused:
        print(f"note: notifiers no rule uses: {', '.join(unused)}")
    if not config.watch.jobs and config.watch.discover is None:
        print("note: nothing to watch yet: watch.jobs and watch.discover are both empty")
    return 0


async def schema(args: argparse.Namespace) -> int:
    """`benchwatch schema`: the JSON Schema of events."""
    from watcher.events import events_json_schema

    sys.stdout.write(events_json_schema())
    return 0


async def demo(args: argparse.Namespace) -> int:
    """`benchwatch demo`: the simulator in-process and a watch over its demo jobs."""
    from watcher.demo import run_demo

    return await run_demo(seed=args.seed, speed=args.speed, interval_s=args.interval, max_seconds=args.max_seconds)
