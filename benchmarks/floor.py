"""The floor: the same responses the watcher received in a cycle, fetched again with a plain aiohttp GET (the
simulator serves identical bytes while its clock stands still), then parsed with orjson and hashed with BLAKE2b and
with xxh3 (the watcher's own hash) — only the parse and the hashes are timed, plus the CPU of receiving them. A bare
client that GETs each response and hashes it with xxh3 costs `recv_cpu_s + xxh3_s`: the floor of an unchanged
poll."""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass

import aiohttp
import orjson
import xxhash

from benchmarks.simproc import API_KEY


@dataclass
class FloorSample:
    """CPU seconds to receive, parse and hash one cycle's responses; their count, bytes and records."""

    requests: int = 0
    bytes: int = 0
    recv_cpu_s: float = 0.0
    parse_s: float = 0.0
    hash_s: float = 0.0
    xxh3_s: float = 0.0
    scenario_records: int = 0
    job_records: int = 0


async def measure_floor(session: aiohttp.ClientSession, base_url: str, requests: list[str]) -> FloorSample:
    """Fetch each `"GET /path?query"` of `requests` one after the other, and time what a floor would do with it."""
    floor = FloorSample()
    for line in requests:
        started = time.process_time()
        body = await _fetch(session, base_url, line)
        parsing = time.process_time()
        parsed = orjson.loads(body)
        hashing = time.process_time()
        hashlib.blake2b(body, digest_size=16).digest()
        xxh3 = time.process_time()
        xxhash.xxh3_128(body).digest()
        done = time.process_time()
        floor.requests += 1
        floor.bytes += len(body)
        floor.recv_cpu_s += parsing - started
        floor.parse_s += hashing - parsing
        floor.hash_s += xxh3 - hashing
        floor.xxh3_s += done - xxh3
        _count_records(floor, parsed)
    return floor


async def measure_bursts(
    session: aiohttp.ClientSession, base_url: str, requests: list[str], bursts: int, interval_s: float
) -> float:
    """The bare client on the watcher's schedule: `requests` cut into `bursts` runs of consecutive requests, one
    run at the start of each interval, each request GET and hashed with xxh3, one after the other; the process's
    CPU seconds over all the intervals (the waits between the bursts cost their wake-ups, as the watcher's do).
    The watcher at rest polls every job once an interval and then sleeps: this is the bare GET + hash doing the
    same, where `measure_floor` sends the same requests back to back, its process never idle in between."""
    size = -(-len(requests) // bursts)
    loop = asyncio.get_running_loop()
    started_cpu, started = time.process_time(), loop.time()
    for index in range(bursts):
        await asyncio.sleep(max(0.0, started + index * interval_s - loop.time()))
        for line in requests[index * size : (index + 1) * size]:
            xxhash.xxh3_128(await _fetch(session, base_url, line)).digest()
    return time.process_time() - started_cpu


_HEADERS = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}


async def _fetch(session: aiohttp.ClientSession, base_url: str, line: str) -> bytes:
    """The body of one request-log line (`"GET /path?query"`), asked as the watcher asked it."""
    method, path = line.split(" ", 1)
    async with session.request(method, base_url + path, headers=_HEADERS) as response:
        return await response.read()


def _count_records(floor: FloorSample, parsed: object) -> None:
    if not isinstance(parsed, dict):
        return
    if "runs" in parsed:
        floor.scenario_records += len(parsed["runs"] or ())
    elif "jobs" in parsed:
        floor.job_records += len(parsed["jobs"] or ())
    else:
        floor.job_records += 1
