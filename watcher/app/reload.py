"""Reading the config again while running (SIGHUP, `POST /-/reload`): all of it or nothing.

A config that fails to load is refused — every problem logged at file:line — and the running one stays. A valid
one takes effect from the next poll: rules, silences, notifiers, watched jobs, the token, the baseline section, the
failure classes, the digests. What the process bound at start (the state database, the status server's address,
the API's address and key) needs a restart; a reload that changes it says so in the log and applies the rest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from watcher.app.config import Config, LoadedConfig, load_config
from watcher.config.loader import ConfigError

log = logging.getLogger("benchwatch.reload")


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """A config read again: the new one, or the problems that refused it."""

    loaded: LoadedConfig | None
    problems: tuple[str, ...] = ()


def read_again(path: Path) -> ReloadResult:
    """Load the config at `path` again; on failure every problem is logged (file:line) and returned."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        problems = tuple(str(problem) for problem in exc.problems)
    except OSError as exc:
        problems = (f"{path}: {exc.strerror or exc}",)
    else:
        watch = loaded.config.watch
        if watch.jobs or watch.discover is not None:
            return ReloadResult(loaded)
        problems = (f"{path}: nothing to watch: set watch.jobs or watch.discover",)
    for problem in problems:
        log.error("reload refused: %s", problem)
    log.error("reload refused (%d problems); the running config stays", len(problems))
    return ReloadResult(None, problems)


def effective(old: Config, new: Config) -> Config:
    """`new`, but with what the process bound at start kept from `old` until a restart."""
    http = new.http.model_copy(update={"enabled": old.http.enabled, "host": old.http.host, "port": old.http.port})
    watch = new.watch.model_copy(
        update={
            "poll_interval_ms": old.watch.poll_interval_ms,
            "max_concurrent_requests": old.watch.max_concurrent_requests,
            "max_requests_per_s": old.watch.max_requests_per_s,
        }
    )
    return new.model_copy(update={"state": old.state, "runloop": old.runloop, "http": http, "watch": watch})


def needs_restart(old: Config, new: Config) -> list[str]:
    """The changed settings a reload cannot apply: the process bound them at start."""
    fixed = {
        "state": (old.state, new.state),
        "http.enabled, http.host, http.port": (
            (old.http.enabled, old.http.host, old.http.port),
            (new.http.enabled, new.http.host, new.http.port),
        ),
        "runloop": (old.runloop, new.runloop),
        "watch.poll_interval, watch.max_concurrent_requests, watch.max_requests_per_s": (
            (old.watch.poll_interval_ms, old.watch.max_concurrent_requests, old.watch.max_requests_per_s),
            (new.watch.poll_interval_ms, new.watch.max_concurrent_requests, new.watch.max_requests_per_s),
        ),
    }
    return [name for name, (before, after) in fixed.items() if before != after]
