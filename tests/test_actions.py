"""The status server's actions over real HTTP against the running Service: a token or nothing happens."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.base import Reply
from tests.running import TOKEN, Running, running_service
from watcher.app.config import load_config
from watcher.config.loader import ConfigError
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SPEC = SimJobSpec(name="nightly", n_scenarios=6, agents=[SimAgent(name="a", pass_rate=0.5)], init_s=0, queue_s=0,
                  scenario_duration_s=(60, 120), fail_rate=0.5)  # fmt: skip


@pytest.fixture
async def running(tmp_path: Path) -> Any:
    clock = ManualClock()
    sim = Simulator(seed=3, clock=clock)
    sim.add_job(SPEC)
    async with running_service(tmp_path, sim, clock) as started:
        yield started


async def _call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as response:
        return response.status, await response.json()


ACTIONS = [
    ("POST", "/api/silences", {"matchers": ["job_name=nightly"], "for": "1h"}),
    ("DELETE", "/api/silences/{silence}", None),
    ("POST", "/api/deliveries/{dead}/retry", None),
    ("POST", "/-/reload", None),
]
BAD_HEADERS = [{}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": TOKEN}, {"Cookie": TOKEN}]


async def test_every_action_without_the_right_token_is_a_401_and_changes_nothing(running: Running) -> None:
    running.hook.then(Reply(400, {"error": "bad"}))
    await running.poll(advance_ms=200_000)
    await running.service.worker.drain()
    dead = [item.notification.id for item in await running.service.store.outbox_items(status="dead")]
    status, silence = await _call("POST", running.url + "/api/silences", json=ACTIONS[0][2], headers=AUTH)
    assert status == 201 and dead
    running.config.write_text("broken: [")  # a reload that got through would be refused and counted
    before = await _call("GET", running.url + "/api/silences")

    for method, path, body in ACTIONS:
        for headers in BAD_HEADERS:
            url = running.url + path.format(silence=silence["id"], dead=dead[0])
            status, answer = await _call(method, url, json=body, headers=headers)
            assert status == 401, (method, path, headers)
            assert "token" in answer["error"]

    assert await _call("GET", running.url + "/api/silences") == before
    assert [item.notification.id for item in await running.service.store.outbox_items(status="dead")] == dead
    assert running.service.metrics.render()[0].count(b"benchwatch_config_last_reload_successful 1.0") == 1


async def test_a_silence_is_added_listed_and_expired_over_http(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="benchwatch")
    body = {"matchers": ["job_name=nightly*", "agent_name=a"], "for": "2h", "comment": "flaky <infra>"}
    status, added = await _call("POST", running.url + "/api/silences", json=body, headers=AUTH)
    assert status == 201
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(added["ends_ms"] / 1000))
    logged = f"silence {added['id']} added over HTTP: job_name=nightly* agent_name=a until {ends}"
    assert logged in [record.getMessage() for record in caplog.records]
    assert added["match"] == {"job_name": "nightly*", "agent_name": "a"}
    assert added["state"] == "active" and added["comment"] == "flaky <infra>"
    assert added["created_by"] == "HTTP API"  # the token names no one; a client may say who: "created_by"
    assert added["ends_ms"] - added["starts_ms"] == 2 * 3_600_000

    status, listed = await _call("GET", running.url + "/api/silences")
    assert [s["id"] for s in listed["silences"]] == [added["id"]]

    status, expired = await _call("DELETE", f"{running.url}/api/silences/{added['id']}", headers=AUTH)
    assert status == 200 and expired["state"] == "expired"
    assert (await _call("DELETE", running.url + "/api/silences/sil_000000000000", headers=AUTH))[0] == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"matchers": ["job_name"], "for": "1h"}, "expected KEY=VALUE"),
        ({"matchers": ["job_name=re:("], "for": "1h"}, "invalid regular expression"),
        ({"match": {"score": {"lt": "low"}}, "for": "1h"}, "expected a number"),
        ({"matchers": ["job_name=x"]}, "give exactly one of for"),
        ({"matchers": ["job_name=x"], "until": "2026-12-01T08:00:00"}, "give a time zone"),
        ({"matchers": ["job_name=x"], "for": "1h", "by": "me"}, "unknown field 'by'"),
    ],
)
@pytest.mark.slow
async def test_a_bad_silence_is_a_400_saying_why(running: Running, body: Any, message: str) -> None:
    status, answer = await _call("POST", running.url + "/api/silences", json=body, headers=AUTH)

    assert status == 400
    assert message in answer["error"]


async def test_without_a_configured_token_actions_are_refused(tmp_path: Path) -> None:
    clock = ManualClock()
    async with running_service(tmp_path, Simulator(clock=clock), clock, token=None) as running:
        status, answer = await _call("POST", running.url + "/-/reload", headers=AUTH)

    assert status == 403
    assert "http.token" in answer["error"]


def test_a_short_token_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "benchwatch.yaml"
    path.write_text("watch: {jobs: [bmj_a]}\nhttp:\n  token: short\n")

    with pytest.raises(ConfigError) as raised:
        load_config(path)

    assert [str(p) for p in raised.value.problems] == [
        f"{path}:3: http.token: the token must be at least 16 characters (try: openssl rand -hex 24)"
    ]


async def test_only_a_dead_letter_can_be_retried(running: Running) -> None:
    running.hook.then(Reply(400, {"error": "bad"}))  # permanent: the first send becomes a dead letter
    await running.poll(advance_ms=200_000)
    await running.service.worker.drain()
    dead = await running.service.store.outbox_items(status="dead")
    assert dead
    notification_id = dead[0].notification.id

    status, answer = await _call("POST", f"{running.url}/api/deliveries/{notification_id}/retry", headers=AUTH)
    assert (status, answer) == (200, {"id": notification_id, "status": "pending"})
    status, answer = await _call("POST", f"{running.url}/api/deliveries/{notification_id}/retry", headers=AUTH)
    assert status == 409 and "only a dead letter" in answer["error"]
    assert (await _call("POST", f"{running.url}/api/deliveries/nt_nope/retry", headers=AUTH))[0] == 404


async def test_readyz_holds_for_three_intervals_and_30_s_after_a_cycle_as_documented(running: Running) -> None:
    hour_s = 3600  # the poll interval of tests/running.py's config
    status, ready = await _call("GET", running.url + "/readyz")
    assert (status, ready["ready"]) == (200, True)
    running.clock.advance((3 * hour_s + 30) * 1000)
    assert (await _call("GET", running.url + "/readyz"))[0] == 200
    running.clock.advance(1000)
    status, late = await _call("GET", running.url + "/readyz")
    assert (status, late) == (503, {"ready": False, "reason": f"the last poll cycle finished {3 * hour_s + 31}s ago"})
    doc = (Path(__file__).parent.parent / "docs" / "operations.md").read_text()
    assert "finished within the last three poll intervals plus 30 s" in doc


async def _raw_request(url: str, head: bytes, body: bytes) -> int:
    """The status of a request sent byte for byte (aiohttp's client would refuse to send such headers)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(head + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await reader.readline()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize(
    "authorization",
    [b"Bearer \xc3\xa9t\xc3\xa9-token-0123456789", b"Bearer \xff\xfe-token-0123456789", b"\xe2\x82\xac"],
)
async def test_a_non_ascii_authorization_header_is_a_401_not_a_500(
    running: Running, caplog: pytest.LogCaptureFixture, authorization: bytes
) -> None:
    head = b"POST /api/silences HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: " + authorization + b"\r\n"
    assert await _raw_request(running.url, head, b'{"matchers": ["job_name=x"], "for": "1h"}') == 401
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "body",
    [
        b'{"matchers": ' + b"[" * 5000 + b"]" * 5000 + b', "for": "1h"}',
        b'{"match": ' + b'{"a": ' * 900 + b"1" + b"}" * 900 + b', "for": "1h"}',
        b'{"match": {"job_name": ' + b"[" * 900 + b'"x"' + b"]" * 900 + b'}, "for": "1h"}',
    ],
    ids=["5,000 deep", "a matcher 900 deep", "a value 900 deep"],
)
async def test_a_silence_nested_deep_is_a_400_not_a_500(
    running: Running, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    head = b"POST /api/silences HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer " + TOKEN.encode()
    assert await _raw_request(running.url, head + b"\r\n", body) == 400
    assert not [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]
