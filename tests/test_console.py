"""The console notifier as a person reads it: a single event's notification says its line once."""

from __future__ import annotations

import io

from notifiers.console import ConsoleConfig, ConsoleNotifier
from watcher.core.notification import Notification


def _notification(title: str, text: str, severity: str = "warning") -> Notification:
    return Notification.model_validate(
        {"id": "nt_1", "rule": "r", "notifier": "screen", "severity": severity, "group_key": "g", "dedup_key": "d",
         "created_ms": 0, "title": title, "text": text, "events": []}
    )  # fmt: skip


async def _printed(notification: Notification) -> str:
    out = io.StringIO()
    notifier = ConsoleNotifier("screen", ConsoleConfig(type="console"), None, stream=out)  # type: ignore[arg-type]
    await notifier.send(notification)
    return out.getvalue()


async def test_a_single_event_prints_its_line_once() -> None:
    line = "nightly: failed: fix-makefile-000 (codex)"
    assert await _printed(_notification(line, line)) == f"⚠ [screen] {line}\n"
    title = "nightly: finished: running → completed — codex 0.782"
    text = "nightly: finished: running → completed"
    assert await _printed(_notification(title, text, "info")) == f"ℹ [screen] {title}\n"


async def test_a_group_prints_each_event_under_its_title() -> None:
    text = "nightly: failed: a-000 (codex)\nnightly: timed out: b-001 (codex) — AgentTimeoutError"
    printed = await _printed(_notification("nightly: 2 events", text))
    assert printed.splitlines() == [
        "⚠ [screen] nightly: 2 events",
        "    nightly: failed: a-000 (codex)",
        "    nightly: timed out: b-001 (codex) — AgentTimeoutError",
    ]
