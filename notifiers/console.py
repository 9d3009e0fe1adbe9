"""The console notifier: prints notifications to stdout (demo and development)."""

from __future__ import annotations

from typing import Literal

from notifiers.base import NotifierConfigBase


class ConsoleConfig(NotifierConfigBase):
    """`type: console`: no settings needed; `format: json` prints one JSON object per notification."""

    type: Literal["console"]
    format: Literal["text", "json"] = "text"

    def destination(self) -> str:
        """Where it sends."""
        return f"stdout ({self.format})"
