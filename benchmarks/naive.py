"""The poller a user would write, in its own process: the official SDK (`runloop-api-client`, async) fetching each
job and the scenario runs of its in-progress runs, then diffing consecutive `model_dump()`s with DeepDiff.

`python -m benchmarks.naive --base-url URL` reads one command per line on stdin (`poll`) and answers one JSON line:
the CPU and wall seconds the poll took, the jobs fetched, the differences found and the peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from deepdiff import DeepDiff
from runloop_api_client import AsyncRunloop

from benchmarks.measure import Stopwatch, peak_rss_mb
from benchmarks.simproc import API_KEY

PAGE_SIZE = 5000  # the API's maximum: kinder to the naive poller than the SDK's default of 20 per page
CONCURRENCY = 8  # as many requests in flight as benchwatch allows by default
TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})


class NaivePoller:
    """Lists the jobs once, then every poll fetches each unfinished job and diffs it against the previous poll."""

    def __init__(self, base_url: str) -> None:
        self.client = AsyncRunloop(base_url=base_url, bearer_token=API_KEY)
        self.watched: list[str] | None = None
        self.previous: dict[str, dict[str, Any]] = {}

    async def poll(self) -> dict[str, Any]:
        """One poll of every watched job; returns what it cost."""
        watch = Stopwatch.start()
        if self.watched is None:
            self.watched = await self._list_job_ids()
        limit = asyncio.Semaphore(CONCURRENCY)
        results = await asyncio.gather(*(self._poll_job(job_id, limit) for job_id in self.watched))
        self.watched = [job_id for job_id, (_, finished) in zip(self.watched, results, strict=True) if not finished]
        return {
            "cpu_s": watch.cpu_s(),
            "wall_s": watch.wall_s(),
            "jobs": len(results),
            "changes": sum(changes for changes, _ in results),
            "peak_rss_mb": peak_rss_mb(),
        }

    async def _list_job_ids(self) -> list[str]:
        ids: list[str] = []
        cursor: str | None = None
        while True:
            extra = {"starting_after": cursor} if cursor else {}
            page = await self.client.benchmark_jobs.list(limit=PAGE_SIZE, **extra)
            ids.extend(job.id for job in page.jobs)
            if not page.has_more or not page.jobs:
                return ids
            cursor = page.jobs[-1].id

    async def _poll_job(self, job_id: str, limit: asyncio.Semaphore) -> tuple[int, bool]:
        async with limit:
            job = await self.client.benchmark_jobs.retrieve(job_id)
            runs: dict[str, list[dict[str, Any]]] = {}
            for run in job.in_progress_runs or ():
                pages = self.client.benchmark_runs.list_scenario_runs(run.benchmark_run_id, limit=PAGE_SIZE)
                runs[run.benchmark_run_id] = [view.model_dump() async for view in pages]
        snapshot = {"job": job.model_dump(), "scenario_runs": runs}
        before = self.previous.get(job_id)
        self.previous[job_id] = snapshot
        changes = 0
        if before is not None:
            changes = sum(len(found) for found in DeepDiff(before, snapshot).values())
        return changes, job.state in TERMINAL


def main() -> None:
    """Answer `poll` commands until stdin closes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naive", description=__doc__)
    parser.add_argument("--base-url", required=True)
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    poller = NaivePoller(args.base_url)
    for line in sys.stdin:
        if line.strip() == "poll":
            print(json.dumps(loop.run_until_complete(poller.poll())), flush=True)
    loop.run_until_complete(poller.client.close())
    loop.close()


if __name__ == "__main__":
    main()
