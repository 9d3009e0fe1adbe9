"""A page of the job list read item by item: one malformed job costs that job only, never the page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from watcher.api.errors import SchemaError
from watcher.api.rejects import RejectedJob
from watcher.core.models import ApiModel, BenchmarkJobView

log = logging.getLogger("benchwatch.client")


class _RawJobList(ApiModel):
    """The page's envelope; its items are checked one by one."""

    jobs: tuple[Any, ...] = ()
    has_more: bool = False
    total_count: int | None = None


@dataclass(frozen=True)
class JobListPage:
    """One page of `GET /v1/benchmark_jobs`: the usable jobs, the rejected items, and the id to page on from."""

    jobs: tuple[BenchmarkJobView, ...]
    rejected: tuple[RejectedJob, ...]
    has_more: bool
    last_id: str | None  # the last item's id, usable or not: the cursor must not re-read a page


def decode_job_list(path: str, body: bytes) -> JobListPage:
    """Parse a job-list page; SchemaError only when the envelope itself is wrong, not for a bad item."""
    try:
        raw = _RawJobList.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise SchemaError(f"GET {path}: unexpected response shape at {where}: {first['msg']}", status=200) from None
    jobs: list[BenchmarkJobView] = []
    rejected: list[RejectedJob] = []
    for index, item in enumerate(raw.jobs):
        try:
            jobs.append(BenchmarkJobView.model_validate(item))
        except ValidationError as exc:
            rejected.append(RejectedJob(_item_id(item), index, _first_problem(exc)))
    ids = [_item_id(item) for item in raw.jobs]
    last_id = next((job_id for job_id in reversed(ids) if job_id is not None), None)
    return JobListPage(tuple(jobs), tuple(rejected), raw.has_more, last_id)


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "item"
    return f"{where}: {first['msg']}"
