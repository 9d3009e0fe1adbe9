"""Every Teams card, of every event kind over hostile and huge input, parsed and rendered by Microsoft's own
Adaptive Cards renderer (the `adaptivecards` npm package, 3.x, with markdown-it for the markdown Teams renders) in
Debian's chromium: no parse or validation warning, and nothing from the API becomes markup. One browser, one page,
every card in one evaluate call. With BENCHWATCH_SCREENSHOTS=1 it also rewrites docs/teams-card.png."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Page, async_playwright

from notifiers.http import encode_json
from notifiers.teams import CARD_VERSION, MESSAGE_MAX_BYTES, card, message
from tests.hostile import notifications
from tests.test_status_page_browser import CHROMIUM, CHROMIUM_ARGS, DOCS
from watcher.pipeline.sample import sample_notification

pytestmark = pytest.mark.slow  # a browser / a real service per test: `make test-fast` skips these

NODE_MODULES = Path(__file__).resolve().parent / "js" / "node_modules"
SCRIPTS = [
    NODE_MODULES / "adaptivecards/dist/adaptivecards.min.js",
    NODE_MODULES / "markdown-it/dist/markdown-it.min.js",
]
SCREENSHOT_LABEL = "test-notify"  # the sample `benchwatch test-notify` sends: what docs/notifiers.md shows

# Parse with a serialization context that collects every warning, validate, render with markdown on (as Teams
# does), and report what a reader would see.
_JUDGE = """cards => {
  const markdown = window.markdownit({html: false, linkify: false});
  AdaptiveCards.AdaptiveCard.onProcessMarkdown = (text, result) => {
    result.outputHtml = markdown.render(text);
    result.didProcess = true;
  };
  const shown = document.getElementById("cards");
  return cards.map(([label, json]) => {
    const card = new AdaptiveCards.AdaptiveCard();
    const context = new AdaptiveCards.SerializationContext();
    card.parse(json, context);
    const warnings = [];
    for (let i = 0; i < context.eventCount; i++) warnings.push(context.getEventAt(i).message);
    for (const event of card.validateProperties().validationEvents) warnings.push(event.message);
    const rendered = card.render();
    const wrapper = document.createElement("div");
    wrapper.dataset.label = label;
    wrapper.className = "card";
    if (rendered) wrapper.appendChild(rendered);
    shown.appendChild(wrapper);
    const links = [...wrapper.querySelectorAll("a")].map(a => a.getAttribute("href"));
    return {
      label, warnings, rendered: !!rendered,
      markup: [...wrapper.querySelectorAll("script, iframe, img, strong, em, del, code, h1, h2, h3, blockquote, li")]
        .map(e => e.outerHTML).filter(html => html !== "<strong>vs baseline</strong>"),
      links, text: wrapper.innerText, actions: [...wrapper.querySelectorAll("button")].map(b => b.innerText)
    };
  });
}"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 640, "height": 900})
        await page.set_content('<body style="font-family: sans-serif; margin: 12px"><div id="cards"></div></body>')
        await page.add_style_tag(path=str(NODE_MODULES / "adaptivecards/dist/adaptivecards.css"))
        for script in SCRIPTS:
            await page.add_script_tag(path=str(script))
        yield page
        await browser.close()


@pytest.fixture(scope="module")
def cards() -> list[tuple[str, dict[str, Any]]]:
    sample = sample_notification("teams", 1_788_228_000_000)
    return [*((label, card(notification)) for label, notification in notifications()), (SCREENSHOT_LABEL, card(sample))]


@pytest.mark.asyncio(loop_scope="module")
async def test_every_card_parses_validates_and_renders_with_no_warning(
    page: Page, cards: list[tuple[str, dict[str, Any]]]
) -> None:
    judged = await page.evaluate(_JUDGE, cards)
    assert len(judged) == len(cards) >= 20
    for verdict in judged:
        label = verdict["label"]
        assert verdict["warnings"] == [], label
        assert verdict["rendered"], label
        assert verdict["markup"] == [], f"{label}: API text became markup"
        assert all(link.startswith("https://platform.runloop.ai") for link in verdict["links"]), label
        if label not in ("watcher.api_recovered", SCREENSHOT_LABEL):  # the two without an API string
            assert "DATE(2026-01-01T00:00:00Z)" in verdict["text"], label  # shown, not evaluated
    by_label = {verdict["label"]: verdict for verdict in judged}
    assert "**bold**" in by_label["job.finished"]["text"] and "Runloop dashboard" in by_label["job.finished"]["actions"]
    assert re.search(r"… and \d+ more", by_label["every event"]["text"])
    if os.environ.get("BENCHWATCH_SCREENSHOTS") == "1":
        shown = page.locator(f'div.card[data-label="{SCREENSHOT_LABEL}"]')
        await shown.screenshot(path=DOCS / "teams-card.png")


def test_cards_declare_the_version_teams_renders_and_stay_within_its_message_size() -> None:
    for label, notification in notifications():
        assert card(notification)["version"] == CARD_VERSION == "1.4", label
        assert len(encode_json(message(notification))) <= MESSAGE_MAX_BYTES < 28_000, label
    compared = dict(notifications())["job.compared"]
    assert any("more agents compared" in block["text"] for block in card(compared)["body"] if "text" in block)
