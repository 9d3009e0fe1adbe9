"""`benchwatch wait`'s exit codes and defaults: cheap to import, read by the argument parser."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_JOB_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_THRESHOLD_MISSED: Final = 3
EXIT_UNKNOWN: Final = 4
EXIT_STALLED: Final = 5
EXIT_TIMEOUT: Final = 124
EXIT_INTERRUPTED: Final = 130  # SIGINT (Ctrl-C): 128 + 2, as shells report it
EXIT_TERMINATED: Final = 143  # SIGTERM (a cancelled CI job): 128 + 15
LATE_POLLS: Final = 3  # a completed job whose runs still lack outcomes is polled this many more times

DEFAULT_INTERVAL: Final = "10s"
DEFAULT_TIMEOUT: Final = "4h"
DEFAULT_GIVE_UP_AFTER: Final = "5m"
DEFAULT_STALL_AFTER: Final = "30m"  # as `watch.stall_after` of `benchwatch run`
MIN_INTERVAL_MS: Final = 100  # a floor that keeps a typo (`--interval 1ms`) from hammering the API
