"""`python -m benchmarks.profile_cycle WORKLOAD [--quick] [--top N] [--save DIR]`: cProfile one unchanged and one
changed poll cycle of a workload (small, large, many, many-control), after the warm-up, and print the top entries by
own and cumulative time (`--save` also writes the .pstats files, for snakeviz or `python -m pstats`).

The profiler's clock is the event loop thread's CPU time (`time.thread_time`): time waiting for the simulator — a
process of its own, sharing the machine's cores — is not counted, and neither is the SQLite store's thread (the
difference between the cycle's process CPU and the profile's total)."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import time
from pathlib import Path

from benchmarks import workloads
from benchmarks.poll_cost import WARMUP_CYCLES, started
from benchmarks.rig import WatcherRig
from benchmarks.workloads import Workload

PICK = {
    "small": workloads.small,
    "large": workloads.large,
    "many": workloads.many,
    "many-control": lambda quick: workloads.many(quick, terminal=False),
}


async def profile(workload: Workload, top: int, save: Path | None) -> None:
    """Warm up, then profile one cycle with the clock still and one after moving it."""
    async with started(workload, naive=False) as setup, WatcherRig(setup.loaded) as rig:
        for _ in range(WARMUP_CYCLES):
            await rig.run_cycle()
        for label, advance_ms in (("unchanged", 0), ("changed", workload.advance_ms)):
            if advance_ms:
                await setup.sim.advance(advance_ms)
            profiler = cProfile.Profile(time.thread_time)
            profiler.enable()
            sample = await rig.run_cycle()
            profiler.disable()
            print(
                f"=== {workload.name}, {label} cycle: {sample.cpu_s:.2f} CPU s (profiled), {sample.requests} requests"
            )
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(top)
            stats.sort_stats("cumulative").print_stats(top)
            if save is not None:
                stats.dump_stats(save / f"{workload.name}-{label}.pstats")


def main() -> None:
    """Parse the arguments and profile."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_cycle", description=__doc__)
    parser.add_argument("workload", choices=list(PICK))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--save", type=Path)
    args = parser.parse_args()
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    asyncio.run(profile(PICK[args.workload](args.quick), args.top, args.save))


if __name__ == "__main__":
    main()
