"""`benchwatch run`: the watcher service, until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import os

from watcher.app.config import load_config
from watcher.app.logs import configure_logging, secrets_of
from watcher.app.recording import SnapshotRecorder, recording_path
from watcher.app.service import Service
from watcher.cli.errors import UsageError
from watcher.cli.signals import stop_on_signals

log = logging.getLogger("benchwatch.run")


async def run_service(args: argparse.Namespace) -> int:
    """`benchwatch run --config CONFIG`: the watcher, until SIGTERM or SIGINT."""
    loaded = load_config(args.config)
    watch = loaded.config.watch
    if not watch.jobs and watch.discover is None:
        raise UsageError(f"{args.config}: nothing to watch: set watch.jobs or watch.discover")
    secrets = [*secrets_of(loaded.config), os.environ.get("RUNLOOP_API_KEY", "")]
    configure_logging(fmt=args.log_format, level=logging.DEBUG if args.verbose else logging.INFO, secrets=secrets)
    stop = stop_on_signals()
    if args.record is None:
        return await Service(loaded).run(stop)
    if not args.record.is_dir():
        raise UsageError(f"--record: the folder {str(args.record)!r} does not exist")
    path = recording_path(args.record)
    with path.open("w", encoding="utf-8") as file:
        log.info("recording every changed snapshot to %s", path)
        return await Service(loaded, recorder=SnapshotRecorder(file)).run(stop)
