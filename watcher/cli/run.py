"""`benchwatch run`: the watcher service, until SIGTERM or SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal

from watcher.app.config import load_config
from watcher.app.logs import configure_logging, secrets_of
from watcher.app.service import Service
from watcher.cli.errors import UsageError, open_for_writing
from watcher.cli.signals import stop_on_signals
from watcher.cli.state import given_state
from watcher.pipeline.recording import SnapshotRecorder, recording_path

log = logging.getLogger("benchwatch.run")


async def run_service(args: argparse.Namespace) -> int:
    """`benchwatch run --config CONFIG [--state STATE]`: the watcher, until SIGTERM or SIGINT; SIGHUP reloads the
    config."""
    loaded = load_config(args.config)
    watch = loaded.config.watch
    if not watch.jobs and watch.discover is None:
        raise UsageError(f"{args.config}: nothing to watch: set watch.jobs or watch.discover")
    secrets = [*secrets_of(loaded.config), os.environ.get("RUNLOOP_API_KEY", "")]
    configure_logging(fmt=args.log_format, level=logging.DEBUG if args.verbose else logging.INFO, secrets=secrets)
    stop = stop_on_signals()
    with contextlib.ExitStack() as files:
        recorder = None
        if args.record is not None:
            if not args.record.is_dir():
                raise UsageError(f"--record: the folder {str(args.record)!r} does not exist")
            path = recording_path(args.record)
            log.info("recording every changed snapshot to %s", path)
            recorder = SnapshotRecorder(files.enter_context(open_for_writing(path, "--record")))
        service = Service(loaded, recorder=recorder, state=given_state(args))
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, service.reload_soon)
        return await service.run(stop)
