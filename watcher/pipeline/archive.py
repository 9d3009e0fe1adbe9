"""The outcomes kept of finished jobs, in the store's state rows: one row per job, grouped by benchmark.

Namespace `outcomes:<benchmark>` holds each job's `JobOutcomes` as JSON under `<create_time_ms>:<job id>` (so a
namespace reads in creation order); `outcomes.index` maps a job id to its benchmark, so one job is found by id.
"""

from __future__ import annotations

from watcher.core.comparison import JobOutcomes
from watcher.core.models import JobState
from watcher.core.records import StateRow
from watcher.diff.trend import TrendPoint, agent_trend
from watcher.store.protocol import Store

INDEX_NAMESPACE = "outcomes.index"


def _namespace(benchmark: str) -> str:
    return f"outcomes:{benchmark}"


def _row_key(outcomes: JobOutcomes) -> str:
    return f"{outcomes.create_time_ms:016d}:{outcomes.job_id}"


class OutcomeArchive:
    """Read and write kept outcomes; `rows` lets a poll's commit carry them with its events."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def rows(outcomes: JobOutcomes) -> list[StateRow]:
        """The state rows that keep `outcomes` (write them in a commit)."""
        return [
            StateRow(_namespace(outcomes.benchmark), _row_key(outcomes), outcomes.model_dump_json()),
            StateRow(INDEX_NAMESPACE, outcomes.job_id, f"{outcomes.benchmark}\n{_row_key(outcomes)}"),
        ]

    async def keep(self, outcomes: JobOutcomes) -> None:
        """Keep `outcomes` now, in a commit of its own."""
        await self.store.commit(state_rows=self.rows(outcomes))

    async def load(self, job_id: str) -> JobOutcomes | None:
        """The kept outcomes of one job, or None."""
        pointer = await self.store.get_state(INDEX_NAMESPACE, job_id)
        if pointer is None:
            return None
        benchmark, _, key = pointer.partition("\n")
        body = await self.store.get_state(_namespace(benchmark), key)
        return JobOutcomes.model_validate_json(body) if body is not None else None

    async def comparable(self, benchmark: str) -> list[JobOutcomes]:
        """Every kept job of one benchmark, oldest first."""
        rows = await self.store.load_state_rows(_namespace(benchmark))
        return [JobOutcomes.model_validate_json(row.body) for row in rows if row.body is not None]

    async def benchmarks(self) -> list[str]:
        """Every benchmark with kept outcomes, sorted (for a status page's trend charts)."""
        rows = await self.store.load_state_rows(INDEX_NAMESPACE)
        return sorted({row.body.partition("\n")[0] for row in rows if row.body is not None})

    async def recent_benchmarks(self, limit: int) -> list[str]:
        """The `limit` benchmarks whose latest kept job was created last, most recent first (the page's trends)."""
        latest: dict[str, str] = {}
        for row in await self.store.load_state_rows(INDEX_NAMESPACE):
            if row.body is None:
                continue
            benchmark, _, key = row.body.partition("\n")
            latest[benchmark] = max(latest.get(benchmark, ""), key)  # keys start with the zero-padded create time
        return sorted(latest, key=lambda b: (latest[b], b), reverse=True)[:limit]

    async def trends(self, benchmark: str, limit: int = 20) -> dict[tuple[str, str | None], list[TrendPoint]]:
        """Per agent (name, model), its trend over the last `limit` completed jobs of a benchmark kept here."""
        jobs = [job for job in await self.comparable(benchmark) if job.state == JobState.COMPLETED][-limit:]
        keys = sorted({agent.key for job in jobs for agent in job.agents}, key=lambda k: (k[0], k[1] or ""))
        return {key: agent_trend(jobs, key) for key in keys}
