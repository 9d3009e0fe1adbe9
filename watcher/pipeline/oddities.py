"""The diff's warnings about odd API data, logged once each: the same odd data comes back on every poll."""

from __future__ import annotations

import logging

log = logging.getLogger("benchwatch.tracker")

REMEMBERED_WARNINGS = 10_000


class OnceOnlyWarnings:
    """Logs each distinct warning the first time it is given (forgetting them all past `remembered`)."""

    def __init__(self, remembered: int = REMEMBERED_WARNINGS) -> None:
        self._remembered = remembered
        self._warned: set[str] = set()

    def warn(self, warning: str) -> None:
        """Log `warning` unless it was logged already."""
        if warning in self._warned:
            return
        if len(self._warned) >= self._remembered:
            self._warned.clear()
        self._warned.add(warning)
        log.warning("%s", warning)
