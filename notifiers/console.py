"""The console notifier: prints notifications to stdout (demo and development)."""

from __future__ import annotations

import sys
from typing import Literal, TextIO

from notifiers.base import NotifierConfigBase
from notifiers.escape import plain_text
from notifiers.protocol import NotifierContext
from watcher.core.notification import Notification

_MARKS = {"info": "ℹ", "warning": "⚠", "critical": "‼"}


class ConsoleConfig(NotifierConfigBase):
    """`type: console`: no settings needed; `format: json` prints one JSON object per notification."""

    type: Literal["console"]
    format: Literal["text", "json"] = "text"

    def destination(self) -> str:
        """Where it sends."""
        return f"stdout ({self.format})"


class ConsoleNotifier:
    """Prints each notification: a marked title and indented text, or one JSON line."""

    def __init__(
        self, name: str, config: ConsoleConfig, context: NotifierContext, stream: TextIO | None = None
    ) -> None:
        self.name = name
        self._config = config
        self._stream = stream

    def __repr__(self) -> str:
        return f"ConsoleNotifier({self.name!r})"

    async def send(self, notification: Notification) -> None:
        """Print it (flushed, so a pipe sees it at once)."""
        stream = self._stream or sys.stdout
        if self._config.format == "json":
            stream.write(notification.model_dump_json() + "\n")
        else:
            stream.write("\n".join(text_lines(self.name, notification)) + "\n")
        stream.flush()


def text_lines(name: str, notification: Notification) -> list[str]:
    """A marked title, then the text's lines indented — but those the title already says (a single event's
    notification has the event's line for both: printed once)."""
    mark = "✅" if notification.action == "resolve" else _MARKS.get(notification.severity, "•")
    title = plain_text(notification.title)
    lines = [f"{mark} [{name}] {title}"]
    said = [line for line in notification.text.splitlines() if not (line.strip() and plain_text(line.strip()) in title)]
    lines.extend(f"    {plain_text(line)}" for line in said)
    summary = notification.summary
    if summary is not None and summary.failures_by_class.total:
        lines.append(f"    failures: {summary.failures_by_class.text()}")
    return lines
