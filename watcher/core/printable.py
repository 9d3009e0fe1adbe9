"""Text from the API or a user, made safe to show on a terminal: the one function every command's output uses."""

from __future__ import annotations

import logging


def printable(text: str) -> str:
    """`text` on one terminal line: every character that is not printable becomes a space — C0 controls (ESC, and so
    every escape sequence: a screen clear `ESC[2J`, a title or clipboard write `ESC]0;`/`ESC]52;`; CR, LF, tab),
    DEL, C1 controls (`\\x9b` is a CSI on its own), and Unicode format and separator characters (bidi overrides).
    A job name or comment must not rewrite the user's terminal."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else " " for char in text)


class PrintableFormatter(logging.Formatter):
    """Log lines for a terminal: each line of a record (a traceback keeps its lines) made `printable`, so a job
    name or an error body quoted in a message cannot send escape sequences."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, line by line made printable."""
        return "\n".join(printable(line) for line in super().format(record).split("\n"))
