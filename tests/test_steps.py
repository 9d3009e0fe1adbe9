"""The service's steps: one run at a time, each whole — a cancelled caller (APScheduler's shutdown) never cuts a run
short; a stop starts nothing new, lets the run under way end, and cancels it only past its grace."""

from __future__ import annotations

import asyncio

import pytest

from watcher.app.steps import Step


class Gate:
    """A body that waits to be let through, counting runs in progress."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.finished = 0

    async def body(self) -> int:
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.entered.set()
        await self.release.wait()
        self.running -= 1
        self.finished += 1
        return self.finished


async def test_a_cancelled_caller_stops_waiting_but_the_run_ends_whole() -> None:
    gate = Gate()
    step = Step("cycle", gate.body)
    caller = asyncio.create_task(step())
    await gate.entered.wait()
    caller.cancel()  # as APScheduler's shutdown cancels a running job
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert step.busy and gate.finished == 0  # the run goes on
    gate.release.set()
    assert await step.stop(grace_s=10) is True  # it ended by itself, within the grace
    assert gate.finished == 1


async def test_runs_never_overlap_and_a_stopped_step_runs_nothing() -> None:
    gate = Gate()
    gate.release.set()
    step = Step("timers", gate.body)
    assert sorted(await asyncio.gather(*(step() for _ in range(5)))) == [1, 2, 3, 4, 5]
    assert gate.peak == 1
    await step.stop(grace_s=10)
    assert await step() is None and gate.finished == 5


async def test_an_exclusive_section_holds_runs_back_and_is_refused_once_stopped() -> None:
    gate = Gate()
    gate.release.set()
    step = Step("cycle", gate.body)
    async with step.exclusive() as open_:
        assert open_
        waiting = asyncio.create_task(step())
        await asyncio.sleep(0)  # one turn of the loop: the run is queued behind the section, not started
        assert step.busy and gate.finished == 0
    assert await waiting == 1
    await step.stop(grace_s=10)
    async with step.exclusive() as open_:
        assert not open_


async def test_a_run_still_going_past_the_grace_is_cancelled() -> None:
    gate = Gate()  # never released: a run stuck on something
    step = Step("heartbeat", gate.body)
    caller = asyncio.create_task(step())
    await gate.entered.wait()
    assert await step.stop(grace_s=0.01) is False
    # its caller (APScheduler's job) ends with nothing, not a CancelledError that APScheduler would log with a
    # traceback: the stop says in one line what was cut off
    assert await caller is None
    assert not step.busy and gate.finished == 0
