"""The short chaos run: `benchwatch run` as a process against the simulator with API faults on — nothing lost,
nothing duplicated, nothing spurious, no traceback. The full matrix is `python -m benchmarks chaos`."""

from __future__ import annotations

import time

import pytest

from benchmarks import chaos


@pytest.mark.slow
async def test_the_quick_chaos_matrix_loses_and_repeats_nothing() -> None:
    started = time.monotonic()
    result = await chaos.run(quick=True)
    for row in result["rows"]:
        assert row["expected"] > 0 and row["faults"] > 0, row
        assert (row["lost"], row["duplicated"], row["spurious"], row["tracebacks"]) == (0, 0, 0, 0), row
    assert time.monotonic() - started < 20
