"""Where a command finds its config and its state: `--config` (or a positional CONFIG), `--state` (a path or a
postgresql:// URL) or else the config's `state:`."""

from __future__ import annotations

import argparse
from pathlib import Path

from watcher.app.config import LoadedConfig, load_config
from watcher.cli.errors import UsageError
from watcher.store.location import is_postgres_url


def config_file(args: argparse.Namespace) -> Path:
    """The config file of `check` and `test-notify`: CONFIG (as it always was) or `--config`, once."""
    positional: Path | None = getattr(args, "config_file", None)
    if positional is not None and args.config is not None:
        raise UsageError("give the config once: as CONFIG or as --config CONFIG")
    path: Path | None = positional if positional is not None else args.config
    if path is None:
        raise UsageError("the config file is required: CONFIG or --config CONFIG")
    return path


def given_state(args: argparse.Namespace) -> str | Path | None:
    """`--state` as a location: a URL stays text (never printed: it may hold a password), a path becomes a Path."""
    state: str | None = getattr(args, "state", None)
    if state is None:
        return None
    return state if is_postgres_url(state) else Path(state)


def state_location(args: argparse.Namespace, loaded: LoadedConfig | None = None) -> str | Path:
    """`--state`, else the state of `loaded` (or of `--config`); a UsageError when neither is given."""
    state = given_state(args)
    if state is not None:
        return state
    if loaded is None and getattr(args, "config", None) is not None:
        loaded = load_config(args.config)
    if loaded is None:
        raise UsageError("give --state STATE (a path or a postgresql:// URL) or --config CONFIG to find the state")
    return loaded.state_location()


def existing_state(args: argparse.Namespace) -> str | Path:
    """The state of a command that only reads it: an SQLite file that does not exist yet is a UsageError."""
    location = state_location(args)
    if isinstance(location, Path) and not location.exists():
        raise UsageError(f"{location}: no state database yet")
    return location
