"""A page of the job list read item by item: one malformed job costs that job only, never the page.

The page is parsed whole when it can be (the usual case). When it cannot — one item holds invalid UTF-8, a lone
surrogate escape, or an unknown field nested deeper than the JSON reader goes — the page is split into its items
without parsing them (`split_items`), and each item is read on its own: the bad one is set apart, the others read.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, ValidationError

from watcher.api.decode import validate_finite
from watcher.api.errors import MalformedResponseError, SchemaError
from watcher.api.rejects import RejectedJob
from watcher.core.models import ApiModel, BenchmarkJobView

log = logging.getLogger("benchwatch.client")

# The tokens that give JSON its structure: strings (skipped whole, whatever bytes or escapes they hold) and
# brackets, commas and colons. Numbers and literals lie between them and are never needed to find an item's ends.
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)


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


@dataclass(frozen=True)
class _Item:
    """One item of a page's `jobs` array, unparsed: its bytes and the id read beside them (None if it has none)."""

    body: bytes
    job_id: str | None


def decode_job_list(path: str, body: bytes) -> JobListPage:
    """Parse a job-list page; SchemaError only when the envelope itself is wrong, not for a bad item."""
    try:
        raw = _RawJobList.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] == "json_invalid":
            return _item_by_item(path, body, first["msg"])
        raise _shape_error(path, first) from None
    jobs: list[BenchmarkJobView] = []
    rejected: list[RejectedJob] = []
    for index, item in enumerate(raw.jobs):
        try:
            jobs.append(validate_finite(BenchmarkJobView, item))
        except ValidationError as exc:
            rejected.append(RejectedJob(_item_id(item), index, _first_problem(exc)))
    ids = [_item_id(item) for item in raw.jobs]
    last_id = next((job_id for job_id in reversed(ids) if job_id is not None), None)
    return JobListPage(tuple(jobs), tuple(rejected), raw.has_more, last_id)


class _Head(BaseModel):
    """What discovery reads of every listed job: enough to tell whether it is new."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    create_time_ms: int


@dataclass(frozen=True)
class ListedJob:
    """A listed job read as far as its id, name and creation time; the rest is read by `view` — only for the
    jobs discovery has not met before. (Reading every job of the page whole, at every cycle, to find the one
    or two that are new was a tenth of an unchanged `small` cycle.)"""

    id: str
    name: str
    create_time_ms: int
    index: int
    item: Any  # the item as parsed (a mapping), or its bytes when the page had to be read item by item

    def view(self) -> BenchmarkJobView:
        """The job whole; ValidationError when it is malformed beyond its head."""
        return validate_finite(BenchmarkJobView, self.item)


@dataclass(frozen=True)
class ListedPage:
    """One page of `GET /v1/benchmark_jobs` read for discovery: the jobs' heads, the items without a usable head,
    and the id to page on from."""

    jobs: tuple[ListedJob, ...]
    rejected: tuple[RejectedJob, ...]
    has_more: bool
    last_id: str | None


def decode_listed(path: str, body: bytes) -> ListedPage:
    """Parse a job-list page as far as each job's head (`ListedJob`); SchemaError only when the envelope itself
    is wrong, not for a bad item."""
    try:
        raw = _RawJobList.model_validate_json(body)
        items: list[tuple[Any, str | None]] = [(item, _item_id(item)) for item in raw.jobs]
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        if first["type"] != "json_invalid":
            raise _shape_error(path, first) from None
        split = split_items(body, b"jobs")
        if split is None:
            raise MalformedResponseError(
                f"GET {path}: response is not valid JSON ({first['msg']})", status=200
            ) from None
        envelope, found = split
        try:
            raw = _RawJobList.model_validate_json(envelope)
        except ValidationError as exc:
            raise _shape_error(path, exc.errors(include_url=False, include_input=False)[0]) from None
        items = [(item.body, item.job_id) for item in found]
    jobs: list[ListedJob] = []
    rejected: list[RejectedJob] = []
    for index, (item, job_id) in enumerate(items):
        try:
            head = _Head.model_validate_json(item) if isinstance(item, bytes) else _Head.model_validate(item)
        except ValidationError as exc:
            rejected.append(RejectedJob(job_id, index, _first_problem(exc)))
            continue
        jobs.append(ListedJob(head.id, head.name, head.create_time_ms, index, item))
    last_id = next((job_id for _, job_id in reversed(items) if job_id is not None), None)
    return ListedPage(tuple(jobs), tuple(rejected), raw.has_more, last_id)


def rejected_view(job: ListedJob, exc: ValidationError) -> RejectedJob:
    """A listed job whose head read but whose whole did not, as the client's reject log takes it."""
    return RejectedJob(job.id, job.index, _first_problem(exc))


def _item_by_item(path: str, body: bytes, problem: str) -> JobListPage:
    """A page the JSON reader refused as a whole, read one item at a time (see the module's docstring)."""
    split = split_items(body, b"jobs")
    if split is None:  # not a page with a jobs array at all: truncated or mangled, worth a retry
        raise MalformedResponseError(f"GET {path}: response is not valid JSON ({problem})", status=200)
    envelope, items = split
    try:
        raw = _RawJobList.model_validate_json(envelope)
    except ValidationError as exc:  # the bytes outside the items are wrong too: the page is unusable
        raise _shape_error(path, exc.errors(include_url=False, include_input=False)[0]) from None
    jobs: list[BenchmarkJobView] = []
    rejected: list[RejectedJob] = []
    for index, item in enumerate(items):
        try:
            jobs.append(validate_finite(BenchmarkJobView, item.body))
        except ValidationError as exc:
            rejected.append(RejectedJob(item.job_id, index, _first_problem(exc)))
    last_id = next((item.job_id for item in reversed(items) if item.job_id is not None), None)
    return JobListPage(tuple(jobs), tuple(rejected), raw.has_more, last_id)


def split_items(body: bytes, key: bytes) -> tuple[bytes, list[_Item]] | None:
    """The top-level object `body` with its array `key` emptied, and that array's items as bytes (with each item's
    `id` when it is a plain string); None when `body` is not such an object. No item is parsed: strings are
    skipped whole, and nesting is counted, not recursed into, so no item's bytes or depth can stop the others."""
    quoted = b'"' + key + b'"'
    depth, previous, last_key, array_start = 0, b"", b"", -1
    item_start, item_id, items = -1, None, []
    for token in _TOKEN.finditer(body):
        text, start = token.group(), token.start()
        char = text[:1]
        if char in (b"[", b"{"):
            if depth == 1 and char == b"[" and last_key == quoted:
                array_start, item_start = start, token.end()
            depth += 1
        elif char in (b"]", b"}"):
            depth -= 1
            if depth == 1 and array_start >= 0:
                items.append(_Item(body[item_start:start].strip(), item_id))
                return body[: array_start + 1] + body[start:], [item for item in items if item.body]
        elif char == b"," and depth == 2 and array_start >= 0:
            items.append(_Item(body[item_start:start].strip(), item_id))
            item_start, item_id = token.end(), None
        elif char == b":":
            last_key = previous
        elif previous == b":" and depth == 3 and array_start >= 0 and last_key == b'"id"' and item_id is None:
            item_id = _plain_string(text)  # a string right after `"id":` in an item
        previous = text
    return None


def _plain_string(token: bytes) -> str | None:
    """A JSON string token as text, when it is plain (no escapes) and valid UTF-8; else None."""
    if b"\\" in token:
        return None
    try:
        return token[1:-1].decode() or None
    except UnicodeDecodeError:
        return None


def _shape_error(path: str, first: Any) -> SchemaError:
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return SchemaError(f"GET {path}: unexpected response shape at {where}: {first['msg']}", status=200)


def _item_id(item: Any) -> str | None:
    value = item.get("id") if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"]) or "item"
    return f"{where}: {first['msg']}"
