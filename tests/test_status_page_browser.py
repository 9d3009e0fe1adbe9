"""The status page in a real browser: Debian's chromium, driven by Playwright, against the real Service and the
in-process simulator. Keyboard-only where a person acts. With BENCHWATCH_SCREENSHOTS=1 the first test also
rewrites docs/status-page-desktop.png and docs/status-page-phone.png (CI leaves the tree as it is)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.fakes.base import Reply
from tests.running import TOKEN, Running, running_service
from watcher.core.clock import ManualClock
from watcher.simulator import SimAgent, SimJobSpec, Simulator

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
DOCS = Path(__file__).resolve().parent.parent / "docs"
AGENTS = [SimAgent(name="claude-code", model_name="claude-sonnet-4-6", pass_rate=0.7),
          SimAgent(name="codex", model_name="gpt-5", pass_rate=0.5)]  # fmt: skip
SPECS = [
    SimJobSpec(name="nightly-regression", n_scenarios=24, agents=AGENTS, concurrency=4, init_s=0, queue_s=0,
               scenario_duration_s=(60, 240), fail_rate=0.15, timeout_rate=0.08),
    SimJobSpec(name="quiet-please", n_scenarios=24, agents=AGENTS[:1], concurrency=4, init_s=0, queue_s=0,
               scenario_duration_s=(60, 240)),
    SimJobSpec(name="smoke", n_scenarios=3, agents=AGENTS[:1], concurrency=3, init_s=0, queue_s=0,
               scenario_duration_s=(30, 60)),
]  # fmt: skip
MOVE_MS = 150_000
POSITIONS = """id => {
  const kids = [...document.querySelector('#jobs').children];
  const finished = [...document.querySelectorAll('#jobs h3.subhead')].find(h => h.textContent === 'Finished');
  return [document.querySelector('#vanished-heading'), document.querySelector(`article[data-job-id='${id}']`),
          finished].map(el => kids.indexOf(el));
}"""
TIMEOUT_MS = 5_000

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest_asyncio.fixture(loop_scope="module")
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    clock = ManualClock()
    sim = Simulator(seed=21, clock=clock)
    for spec in SPECS:
        sim.add_job(spec)
    async with running_service(tmp_path, sim, clock) as started:
        yield started


async def _open(browser: Browser, url: str, *, width: int = 1280, height: int = 900, **options: Any) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height}, **options)
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    return page


async def _tab_to(page: Page, selector: str, *, key: str = "Tab", limit: int = 60) -> None:
    """Press Tab (or Shift+Tab) until `selector` has the focus, as a keyboard user does."""
    for _ in range(limit):
        await page.keyboard.press(key)
        if await page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} never got the focus in {limit} presses of Tab")


async def _open_details(page: Page, selector: str) -> None:
    """Open a `details` by clicking its summary, as a reader does. The page swaps its sections every 0.2 s here: a
    click whose press and release straddle a swap lands on no element (a person clicks again), so it is repeated
    until the details is open."""
    for _ in range(5):
        await page.locator(selector + " > summary").click()
        try:
            await page.locator(selector + "[open]").wait_for(timeout=2000)
            return
        except PlaywrightTimeoutError:
            continue
    raise AssertionError("the details never opened")


def _job_id(running: Running, name: str) -> str:
    return next(plan.job_id for plan in running.sim.jobs() if plan.name == name)


async def test_the_page_lists_the_jobs_and_a_bar_moves_when_the_simulator_s_clock_does(
    browser: Browser, running: Running
) -> None:
    await running.poll(advance_ms=MOVE_MS)
    await running.poll(advance_ms=MOVE_MS)
    page = await _open(browser, running.url + "/?refresh=0.2")
    names = await page.locator("article.job h3 > a").all_inner_texts()
    assert sorted(names) == sorted(spec.name or "" for spec in SPECS)

    bar = page.locator(f'article[data-job-id="{_job_id(running, "quiet-please")}"] svg.bar')
    done_before = int(await bar.get_attribute("data-done") or "0")
    failures_selector = f'article[data-job-id="{_job_id(running, "nightly-regression")}"] details'
    failures = page.locator(failures_selector)
    await _open_details(page, failures_selector)
    await running.poll(advance_ms=MOVE_MS)
    moved = "([id, n]) => Number(document.querySelector(`article[data-job-id='${id}'] svg.bar`).dataset.done) > n"
    await page.wait_for_function(moved, arg=[_job_id(running, "quiet-please"), done_before])  # no reload: it fetches
    assert await failures.get_attribute("open") == ""  # what the reader opened stays open
    if os.environ.get("BENCHWATCH_SCREENSHOTS") == "1":
        await page.screenshot(path=DOCS / "status-page-desktop.png")
        phone = await _open(browser, running.url + "/", width=390, height=844, is_mobile=True)
        await phone.screenshot(path=DOCS / "status-page-phone.png")

    static = await _open(browser, running.url + "/", java_script_enabled=False)
    assert sorted(await static.locator("article.job h3 > a").all_inner_texts()) == sorted(names)


async def test_open_incidents_end_with_their_jobs_and_a_vanished_job_moves_to_its_own_section(
    browser: Browser, running: Running
) -> None:
    smoke, quiet = _job_id(running, "smoke"), _job_id(running, "quiet-please")
    await running.poll(advance_ms=MOVE_MS)
    await running.poll(advance_ms=MOVE_MS)  # `smoke` has finished, its notices sent
    page = await _open(browser, running.url + "/?refresh=0.2")
    incidents = await page.locator("ul.incidents li").all_inner_texts()
    assert [text for text in incidents if smoke in text] == []
    assert any(quiet in text and "until quiet-please ends" in text for text in incidents)

    running.sim.remove_job(quiet)
    await running.poll(advance_ms=MOVE_MS)
    await running.poll(advance_ms=MOVE_MS)  # 404 twice: vanished
    card = page.locator(f'#vanished-heading ~ article[data-job-id="{quiet}"]')
    await card.wait_for()  # no reload: the page fetches it out of "running"
    assert "the API answers 404 (last seen running)" in await card.inner_text()
    await page.locator("ul.incidents li", has_text=quiet).wait_for(state="detached")
    order = await page.evaluate(POSITIONS, quiet)  # running jobs, then the vanished, then the finished
    assert -1 not in order and order == sorted(order)


async def test_keyboard_only_a_silence_added_on_the_page_stops_the_next_notification_for_its_job(
    browser: Browser, running: Running
) -> None:
    await running.poll(advance_ms=MOVE_MS)
    page = await _open(browser, running.url + "/?refresh=600")
    await _tab_to(page, 'nav a[href="#silence-form-heading"]')
    await page.keyboard.press("Enter")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.id") == "silence-matchers"
    await page.keyboard.type("job_name=quiet-please")
    await page.keyboard.press("Tab")  # for: 2h, as offered
    await page.keyboard.press("Tab")
    await page.keyboard.type("noisy while we fix the runner")
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "token-input"  # asked once, then kept in the tab
    await page.keyboard.type("not-the-token-at-all")
    await page.keyboard.press("Enter")
    await page.get_by_role("status").filter(has_text="token was refused; nothing was changed").wait_for()
    assert await page.evaluate("document.activeElement.id") == "token-input"  # asked again
    await page.keyboard.type(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_role("status").filter(has_text="added").wait_for()
    await page.locator(".silences", has_text="job_name=quiet-please").wait_for()

    running.hook.requests.clear()
    await running.poll(advance_ms=MOVE_MS)
    await running.service.worker.drain()
    told = {event["job_name"] for d in running.hook.deliveries for event in d.payload["events"]}
    assert told == {"nightly-regression"}


async def test_keyboard_only_a_dead_letter_is_retried_from_the_page(browser: Browser, running: Running) -> None:
    running.hook.then(*[Reply(400, {"error": "no such channel"})] * 3)  # permanent: dead letters at once
    await running.poll(advance_ms=MOVE_MS)
    await running.service.worker.drain()
    dead = await running.service.store.outbox_items(status="dead")
    assert len(dead) == 3
    sent_before = len(running.hook.requests)
    page = await _open(browser, running.url + "/?refresh=600")
    await page.locator(".dead", has_text="HTTP 400").first.wait_for()

    for retried in range(1, 3):
        # the first time from the top of the page, then back up from the outcome the page moved the focus to
        await _tab_to(page, 'nav a[href="#notifications-heading"]', key="Tab" if retried == 1 else "Shift+Tab")
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.dataset.action") == "retry"
        await page.keyboard.press("Enter")
        if retried == 1:  # the token is asked the first time only
            assert await page.evaluate("document.activeElement.id") == "token-input"
            await page.keyboard.type(TOKEN)
            await page.keyboard.press("Enter")
        await page.get_by_role("status").filter(has_text="queued again").wait_for()
        await running.hook.wait_for(sent_before + retried)
        await page.locator('[data-section="notifications"] h2', has_text=f"{3 - retried} dead").wait_for()
        assert await page.evaluate("document.activeElement.id") == "action-status"

    assert await page.locator("#token-form").is_hidden()


async def test_the_delivery_log_filters_retries_and_explains(browser: Browser, running: Running) -> None:
    running.hook.then(*[Reply(400, {"error": "no such channel"})] * 3)  # permanent: dead letters at once
    await running.poll(advance_ms=MOVE_MS)
    await running.service.worker.drain()
    dead = sorted(item.notification.id for item in await running.service.store.outbox_items(status="dead"))
    assert len(dead) == 3
    page = await _open(browser, running.url + "/?refresh=600&dl_rule=progress&dl_status=dead#deliveries")
    rows = page.locator('[data-section="deliveries"] li.delivery')
    assert sorted(await rows.evaluate_all("rows => rows.map(r => r.dataset.id)")) == dead
    first = rows.first
    await first.locator("summary").click()
    cells = await first.locator("table.attempts tbody td").all_inner_texts()
    assert cells[1:3] == ["dead", "400"] and cells[3].startswith("client_error: ") and "HTTP 400" in cells[3]

    retried = await first.get_attribute("data-id")
    sent_before = len(running.hook.requests)
    await first.locator('button[data-action="retry"]').click()
    await page.locator("#token-input").fill(TOKEN)
    await page.keyboard.press("Enter")
    await page.get_by_role("status").filter(has_text="queued again").wait_for()
    await running.hook.wait_for(sent_before + 1)
    await page.wait_for_function("() => document.querySelectorAll('li.delivery').length === 2")  # no longer dead
    assert retried not in await rows.evaluate_all("rows => rows.map(r => r.dataset.id)")

    explained = await rows.first.get_attribute("data-id")
    await rows.first.get_by_role("link", name="Explain").click()
    await page.locator("h1", has_text=f"Why? {explained}").wait_for()
    assert f"sent to hook ({explained})" in await page.locator("dl.decisions").inner_text()
    assert (
        f"{explained} → hook (rule progress): dead after 1 attempt: client_error: "
        in await page.locator("main").inner_text()
    )
