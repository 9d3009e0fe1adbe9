"""The status page without a browser: what the server renders, escapes and forbids, against the real Service."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.running import Running, running_service
from watcher.core.clock import ManualClock
from watcher.core.comparison import AgentOutcomes, JobOutcomes, ScenarioResult
from watcher.pipeline.archive import OutcomeArchive
from watcher.simulator import SimAgent, SimJobSpec, Simulator

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
AGENTS = [SimAgent(name="alpha", model_name="m1", pass_rate=0.5), SimAgent(name="beta<b>", pass_rate=0.5)]
SPECS = [
    SimJobSpec(name=f"nightly-{HOSTILE}", n_scenarios=40, agents=AGENTS, init_s=0, queue_s=0, fail_rate=0.4,
               concurrency=2, scenario_duration_s=(60, 300)),
    SimJobSpec(name="quick", n_scenarios=2, agents=AGENTS[:1], init_s=0, queue_s=0, scenario_duration_s=(30, 60)),
]  # fmt: skip
DOOMED = SimJobSpec(name="doomed", n_scenarios=4, agents=AGENTS[:1], init_s=0, queue_s=0, fail_rate=0.0)


# One watcher for the whole module: every test here only reads.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> Any:
    clock = ManualClock()
    sim = Simulator(seed=11, clock=clock)
    for spec in SPECS:
        sim.add_job(spec)
    sim.add_job(DOOMED, create_ms=clock.now_ms() - 1)  # the oldest: sim.jobs()[2]
    async with running_service(tmp_path_factory.mktemp("page"), sim, clock) as started:
        sim.remove_job(sim.jobs()[2].job_id)  # seen once; from now on it answers 404
        await started.poll(advance_ms=240_000)
        await started.poll(advance_ms=900_000)  # `quick` finishes; `doomed` vanishes (404 twice)
        await started.poll(advance_ms=1_000)  # and rests
        await _keep_nightlies(started)
        yield started


TREND_AGENT = 'evil"><script>alert(2)</script>'
SCENARIOS = [f"s{i:02d}" for i in range(30)]


def _agent(name: str, model: str | None, passed: int) -> AgentOutcomes:
    scenarios = tuple(
        ScenarioResult(scenario_definition_id=sid, scenario_name=sid, state="COMPLETED", score=float(n < passed))
        for n, sid in enumerate(SCENARIOS)
    )
    return AgentOutcomes(
        agent_name=name, model_name=model, benchmark_run_id=f"bmr_{name}_{passed}", scenarios=scenarios
    )


async def _keep_nightlies(started: Running) -> None:
    """Three completed nightlies of one benchmark, as the watcher keeps them: `alpha` drops on the third."""
    archive = OutcomeArchive(started.service.store)
    for n, alpha_passed in enumerate((30, 29, 12), start=1):
        agents = (_agent("alpha", "m1", alpha_passed), _agent(TREND_AGENT, None, 24))
        await archive.keep(
            JobOutcomes(job_id=f"bmj_night{n}", job_name=f"nightly-{n}", state="completed",
                        create_time_ms=n * 86_400_000, benchmark="benchmark:bmd_trend", agents=agents)
        )  # fmt: skip


async def _get(url: str) -> tuple[aiohttp.ClientResponse, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response, await response.text()


class _Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    return parser.tags


@pytest.mark.slow
async def test_the_page_lists_running_jobs_above_finished_ones_with_a_bar_per_agent(running: Running) -> None:
    response, html = await _get(running.url + "/")

    assert response.status == 200 and response.content_type == "text/html"
    running_at, finished_at = html.index('data-job-id="' + running.sim.jobs()[0].job_id), html.index(">Finished<")
    assert running_at < finished_at < html.index('data-job-id="' + running.sim.jobs()[1].job_id)
    bars = [attrs for tag, attrs in _tags(html) if tag == "svg" and "bar" in (attrs.get("class") or "")]
    assert len(bars) == 4  # two agents of the running job, one of the vanished one, one of the finished one
    assert all(re.fullmatch(r".+: \d+ of \d+ done, \d+ failed, \d+ timed out", b["aria-label"] or "") for b in bars)
    assert "pass rate" in html and "dashboard" in html and "Failures by type" in html


async def test_everything_from_the_api_is_escaped(running: Running) -> None:
    _, html = await _get(running.url + "/")

    assert HOSTILE not in html and "<b>" not in html
    assert "nightly-&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "beta&lt;b&gt;" in html
    assert [tag for tag, attrs in _tags(html) if tag == "img" or "onerror" in attrs] == []


async def test_no_inline_script_or_style_and_a_csp_that_forbids_them(running: Running) -> None:
    response, html = await _get(running.url + "/")

    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    scripts = [attrs for tag, attrs in _tags(html) if tag == "script"]
    assert scripts == [{"src": "/static/status.js", "defer": None}]
    assert [tag for tag, attrs in _tags(html) if "style" in attrs or tag == "style"] == []
    for name in ("status.js", "status.css"):
        static, body = await _get(f"{running.url}/static/{name}")
        assert static.status == 200 and body
    assert (await _get(running.url + "/static/..%2fpage.py"))[0].status == 404


async def test_events_are_newest_first_and_filter_by_job_and_kind_without_script(running: Running) -> None:
    job_id = running.sim.jobs()[1].job_id
    _, all_events = await _get(running.url + "/")
    _, filtered = await _get(f"{running.url}/?job={job_id}&kind=job.discovered")

    events_section = all_events.split('id="events-heading"')[1].split('id="notifications-heading"')[0]
    times = re.findall(r"<time>([^<]+)</time>", events_section)
    assert times == sorted(times, reverse=True) and len(times) > 2
    kinds = re.findall(r'<span class="kind">([a-z_.]+)</span>\s*<a href="\?job=([^"]+)#events"', filtered)
    assert kinds == [("job.discovered", job_id)]
    assert f'<option value="{job_id}" selected>' in filtered


async def test_the_json_sections_are_the_page_s_own(running: Running) -> None:
    async with aiohttp.ClientSession() as session, session.get(running.url + "/api/page?kind=job.finished") as r:
        data = await r.json()
    _, html = await _get(running.url + "/?kind=job.finished")

    assert set(data["sections"]) == {"jobs", "events", "notifications", "deliveries", "silences"}
    assert data["sections"]["events"].strip() in html


async def test_trends_chart_each_agent_with_its_drop_marked_and_escaped(running: Running) -> None:
    _, html = await _get(running.url + "/")

    section = html[html.index('<section id="trends"') : html.index('<section id="events"')]
    charts = [attrs for tag, attrs in _tags(section) if tag == "svg"]
    assert [c["aria-label"] for c in charts] == [
        "alpha (m1): score 1.00 → 0.40, pass rate 100% → 40% over the last 3 jobs; 1 significant drop",
        f"{TREND_AGENT}: score 0.80 → 0.80, pass rate 80% → 80% over the last 3 jobs; no significant drop",
    ]
    assert section.count('class="drop"') == 1 and "dropped in nightly-3" in section
    assert "<script>" not in section and "evil&#34;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in section
    assert "benchmark:bmd_trend" in section and "last 10 jobs at most" in section  # no baseline: the default N


async def test_a_vanished_job_leaves_running_for_a_section_of_its_own_saying_when(running: Running) -> None:
    _, html = await _get(running.url + "/")

    jobs = html[html.index('<section id="jobs"') : html.index('<section id="trends"')]
    memories = await running.service.store.load_memories()
    (gone_id,) = [memory.job_id for memory in memories.values() if memory.vanished]
    nightly = running.sim.jobs()[0].job_id
    order = [jobs.index('data-job-id="' + nightly), jobs.index(">Vanished<"), jobs.index('data-job-id="' + gone_id),
             jobs.index(">Finished<")]  # fmt: skip
    assert order == sorted(order) and "1 running, 1 vanished, 1 finished shown" in jobs
    card = jobs[order[2] : order[3]]
    assert re.search(r"vanished 20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC: the API answers 404 \(last seen running\)", card)


async def test_open_incidents_are_only_what_still_needs_someone(running: Running) -> None:
    _, html = await _get(running.url + "/")

    section = html[html.index("<h3>Open incidents</h3>") : html.index("<h3>Recently sent</h3>")]
    nightly = running.sim.jobs()[0]
    items = re.findall(r"<li>(.*?)</li>", section, re.S)
    # `quick` finished and `doomed` vanished, each after its notice was sent: theirs are over
    assert len(items) == 1 and f"progress:{nightly.job_id}" in items[0]
    assert "(until nightly-&lt;script&gt;" in items[0] and "ends)" in items[0]


async def _json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


async def test_the_delivery_log_lists_every_notification_with_its_attempts_and_filters(running: Running) -> None:
    await running.service.drain()
    status, body = await _json(running.url + "/api/deliveries")
    logged = body["deliveries"]
    assert status == 200 and logged and {d["rule"] for d in logged} == {"progress"}
    assert [d["created_ms"] for d in logged] == sorted((d["created_ms"] for d in logged), reverse=True)
    first = logged[0]
    assert first["status"] == "sent" and first["interrupted"] == 0 and first["notifier"] == "hook"
    assert [(a["attempt"], a["outcome"], a["http_status"]) for a in first["attempts"]] == [(1, "sent", None)]

    quick = running.sim.jobs()[1].job_id
    _, mine = await _json(f"{running.url}/api/deliveries?job={quick}&status=sent&notifier=hook&limit=500")
    assert mine["deliveries"] and all(d["job_ids"] == [quick] for d in mine["deliveries"])
    assert (await _json(running.url + "/api/deliveries?rule=nobody"))[1] == {"deliveries": []}
    assert (await _json(running.url + "/api/deliveries?status=lost")) == (
        400, {"error": "status must be one of pending, sent, dead, interrupted"},
    )  # fmt: skip

    _, page = await _get(f"{running.url}/?dl_job={quick}&dl_status=sent#deliveries")
    section = page.split('id="deliveries-heading"')[1].split('id="silences-heading"')[0]
    rows = re.findall(r'<li class="delivery status-(\w+)" data-id="(nt_\w+)">', section)
    assert rows and {status for status, _ in rows} == {"sent"}
    assert {notification_id for _, notification_id in rows} == {d["id"] for d in mine["deliveries"]}
    assert f'<option value="{quick}" selected>' in section and '<option value="sent" selected>' in section
    assert f'href="/explain/{rows[0][1]}"' in section and '<th scope="col">HTTP</th>' in section


async def test_explain_says_why_a_notification_was_sent(running: Running) -> None:
    _, body = await _json(running.url + "/api/deliveries?limit=1")
    (delivery,) = body["deliveries"]
    status, explained = await _json(f"{running.url}/api/explain/{delivery['id']}")
    assert status == 200 and len(explained["explanations"]) == len(delivery["events"])
    (progress,) = [r for r in explained["explanations"][0]["rules"] if r["rule"] == "progress"]
    assert progress["decisions"][-1]["text"] == f"sent to hook ({delivery['id']})"

    response, html = await _get(f"{running.url}/explain/{delivery['id']}")
    assert response.status == 200 and f"sent to hook ({delivery['id']})" in html
    assert "hook (rule progress): sent after 1 attempt" in html
    assert HOSTILE not in html  # the job's name is in the events' lines, escaped
    response, html = await _get(running.url + "/explain/nt_<b>nothing</b>")
    assert response.status == 404 and "<b>nothing" not in html
    assert (await _json(running.url + "/api/explain/ev_nothing"))[0] == 404
