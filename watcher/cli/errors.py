"""What the CLI says when a command cannot run: exit codes and the usage error."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
EXIT_API: Final = 4
EXIT_READER_GONE: Final = 141  # 128 + SIGPIPE: what a shell shows for `git log | head -1`'s git


class UsageError(Exception):
    """Bad input from the user: exit code 2, one line."""
