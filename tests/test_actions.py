"""The status server's actions over real HTTP against the running Service: a token or nothing happens."""

from __future__ import annotations

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


async def test_a_silence_is_added_listed_and_expired_over_http(running: Running) -> None:
    body = {"matchers": ["job_name=nightly*", "agent_name=a"], "for": "2h", "comment": "flaky <infra>"}
    status, added = await _call("POST", running.url + "/api/silences", json=body, headers=AUTH)
    assert status == 201
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
