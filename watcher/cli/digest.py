"""`benchwatch digest --config C [--since 24h] [--name NAME]`: print a digest now, as it would be sent, without
sending it or touching its schedule (docs/digests.md)."""

from __future__ import annotations

import argparse
import os

from watcher.api.client import RunloopClient
from watcher.app.config import load_config
from watcher.cli.errors import EXIT_OK, UsageError
from watcher.config.durations import parse_duration_ms
from watcher.core.clock import SystemClock
from watcher.pipeline.digest import DigestConfig, DigestMaker
from watcher.store import open_store

_EVERYTHING = "digest"


async def digest_command(args: argparse.Namespace) -> int:
    """Print each configured digest (or the one named) over the last `--since`, ending now."""
    try:
        since_ms = parse_duration_ms(args.since)
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from None
    if since_ms <= 0:
        raise UsageError("--since must be longer than 0")
    loaded = load_config(args.config)
    config = loaded.config
    digests = _chosen(config.digests, args.name)
    now_ms = SystemClock().now_ms()
    base_url = config.runloop.resolved_base_url(os.environ)
    async with open_store(loaded.state_location()) as store, RunloopClient(base_url=base_url) as client:
        maker = DigestMaker(store, client, config.failure_classes.table())
        for index, digest in enumerate(digests):
            title, text, _ = await maker.message(digest, now_ms - since_ms, now_ms)
            print(("\n" if index else "") + f"{title}\n\n{text}")
    return EXIT_OK


def _chosen(digests: tuple[DigestConfig, ...], name: str | None) -> tuple[DigestConfig, ...]:
    """The digest named, or every configured one; with none configured, one over every job that finished."""
    if name is not None:
        named = tuple(digest for digest in digests if digest.name == name)
        if not named:
            known = ", ".join(digest.name for digest in digests) or "none configured"
            raise UsageError(f"no digest named {name!r} in the config (known: {known})")
        return named
    return digests or (DigestConfig(name=_EVERYTHING, notify=("-",)),)
