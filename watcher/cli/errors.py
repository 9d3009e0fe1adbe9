"""What the CLI says when a command cannot run: exit codes, the usage error, and how an error is told.

One boundary (`watcher.cli.main`) turns what a command raises into one line and an exit code: a usage error — ours,
a config file's problems, a state database that cannot be used — is exit 2; an API error exit 4; anything else is
a bug: one line saying so, exit 70 (EX_SOFTWARE), and its traceback with `--debug`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, TextIO

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_API: Final = 4
EXIT_READER_GONE: Final = 141  # 128 + SIGPIPE: what a shell shows for `git log | head -1`'s git
EXIT_SOFTWARE: Final = 70  # sysexits.h EX_SOFTWARE: an internal error
EXIT_INTERRUPTED: Final = 130


class UsageError(Exception):
    """Bad input from the user: exit code 2, one line."""


def usage_lines(exc: BaseException) -> list[str] | None:
    """The lines that tell `exc` as a usage error — ours, a config file's problems (one line each), a state
    database that cannot be used; None for anything else."""
    # Imported once an error is raised: the config loader pulls in pydantic, which a command like `wait` loads
    # only after its first request (docs/performance.md, "Start-up").
    from watcher.config.loader import ConfigError
    from watcher.store.errors import StoreError

    if isinstance(exc, ConfigError):
        return [str(problem) for problem in exc.problems]
    if isinstance(exc, UsageError | StoreError):
        return [f"benchwatch: error: {one_line(exc)}"]
    return None


def bug_line(exc: BaseException) -> str:
    """The one line an unexpected exception is told in."""
    return (
        f"benchwatch: internal error: {type(exc).__name__}: {one_line(exc)}"
        " (a bug; run with `--debug` for the traceback)"
    )


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (whitespace runs, line breaks included, become one space)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def open_for_writing(path: Path, flag: str) -> TextIO:
    """`path` opened to write text; a path that cannot be written is a UsageError naming `flag`."""
    try:
        return path.open("w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{flag}: {path}: {exc.strerror or exc}") from None
