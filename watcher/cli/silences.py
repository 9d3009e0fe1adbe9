"""`benchwatch silences add|list|expire`: runtime silences in the store of a config's state database.

A running watcher (every replica) applies them from its next poll; no token is needed here, since whoever can
write the database could change it anyway.
"""

from __future__ import annotations

import argparse
import getpass
import json
import time

from rules.silences import RuntimeSilence
from watcher.cli.errors import UsageError
from watcher.cli.state import state_location
from watcher.core.clock import SystemClock
from watcher.core.printable import printable
from watcher.pipeline.silences import SilenceError, UnknownSilence, add_silence, expire_silence, list_silences
from watcher.pipeline.silences import request_from_args as silence_request
from watcher.store import open_store
from watcher.store.location import redact_url


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _line(silence: RuntimeSilence, now_ms: int) -> str:
    comment = f"  # {silence.comment}" if silence.comment else ""
    comment += f" (by {silence.created_by})" if silence.created_by else ""
    return printable(
        f"{silence.id}  {silence.state_at(now_ms):<7} {_when(silence.starts_ms)} → {_when(silence.ends_ms)}  "
        f"{silence.matchers_text()}{comment}"
    )


async def add(args: argparse.Namespace) -> int:
    """`benchwatch silences add`: store a silence; print its id."""
    now_ms = SystemClock().now_ms()
    try:
        request = silence_request(
            args.match, now_ms=now_ms, for_=args.for_, until=args.until, comment=args.comment, created_by=_creator(args)
        )
    except SilenceError as exc:
        raise UsageError(str(exc)) from None
    async with open_store(state_location(args)) as store:
        silence = await add_silence(store, request, now_ms)
    print(silence.id)
    return 0


def _creator(args: argparse.Namespace) -> str:
    """`--by`, else the login name (none in some containers: then nobody is named)."""
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return ""


async def list_command(args: argparse.Namespace) -> int:
    """`benchwatch silences list`: every runtime silence, newest first (as JSON with --json)."""
    async with open_store(state_location(args)) as store:
        silences = await list_silences(store)
    now_ms = SystemClock().now_ms()
    if args.json:
        print(json.dumps([{**s.to_json(), "state": s.state_at(now_ms)} for s in silences], indent=2))
        return 0
    for silence in silences:
        print(_line(silence, now_ms))
    active = sum(1 for s in silences if s.active_at(now_ms))
    print(f"({len(silences)} silences, {active} active; the config file's silences are listed by `benchwatch check`)")
    return 0


async def expire(args: argparse.Namespace) -> int:
    """`benchwatch silences expire ID`: end a silence now."""
    location = state_location(args)
    now_ms = SystemClock().now_ms()
    async with open_store(location) as store:
        try:
            silence = await expire_silence(store, args.id, now_ms)
        except UnknownSilence:
            raise UsageError(f"no silence {args.id!r} in {redact_url(str(location))}") from None
    print(f"{silence.id}: expired at {_when(silence.ends_ms)}")
    return 0
