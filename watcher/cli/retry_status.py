"""The CLI's logging: retries of API calls as one status line in interactive use, as log lines with `-v`.

The client logs each retry at INFO on `benchwatch.client` (watcher/api/client.py). At a terminal, without `-v`,
they feed one line on stderr that each retry overwrites and that is erased once the command prints or ends — a
retry that succeeds leaves nothing behind, and a call that fails for good is reported once, by its error. A live
view (`wait`) takes the line over and shows it under its table.
"""

from __future__ import annotations

import logging
import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from watcher.core.printable import PrintableFormatter, printable

RETRY_LOGGER = "benchwatch.client"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_ERASE = "\r\x1b[2K"


class StatusLine(logging.Handler):
    """One line of stderr that each retry overwrites; `sink`, when set (a live view), shows it instead."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.sink: Callable[[str], None] | None = None
        self._shown = False

    def emit(self, record: logging.LogRecord) -> None:
        """Show the retry."""
        text = printable(f"retrying: {record.getMessage()}")
        if self.sink is not None:
            self.sink(text)
            return
        width = shutil.get_terminal_size().columns
        self.stream.write(_ERASE + (text if len(text) < width else text[: width - 2] + "…"))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line, if one is shown."""
        if self._shown:
            self.stream.write(_ERASE)
            self.stream.flush()
            self._shown = False


_installed: list[StatusLine] = []  # the one status line of this process, once installed


def configure_cli_logging(*, verbose: bool, stream: TextIO | None = None) -> None:
    """Warnings (everything with `-v`) as log lines on stderr; at a terminal without `-v`, retries as a status line."""
    err = stream or sys.stderr
    level = logging.DEBUG if verbose else logging.WARNING
    handler = logging.StreamHandler(err)
    handler.setFormatter(PrintableFormatter(LOG_FORMAT))
    handler.setLevel(level)  # the client logs retries at INFO: they must not reach this handler without -v
    logging.basicConfig(level=level, format=LOG_FORMAT, handlers=[handler], force=True)
    if verbose or not err.isatty():
        return
    client_log = logging.getLogger(RETRY_LOGGER)
    for old in _installed:
        client_log.removeHandler(old)
    _installed[:] = [StatusLine(err)]
    client_log.setLevel(logging.INFO)
    client_log.addHandler(_installed[0])


def status_line() -> StatusLine | None:
    """The status line, when the CLI shows one (a terminal, no `-v`)."""
    return _installed[0] if _installed else None


def clear_status() -> None:
    """Erase the status line before printing anything else (and at exit)."""
    for status in _installed:
        status.clear()
