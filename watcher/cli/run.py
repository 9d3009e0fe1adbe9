"""`benchwatch run`: the watcher service, until SIGTERM or SIGINT; SIGHUP reloads the config."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from watcher.app.config import load_config
from watcher.app.logs import configure_logging, secrets_of
from watcher.app.service import Service
from watcher.cli.errors import UsageError
from watcher.cli.signals import stop_on_signals


async def run_service(args: argparse.Namespace) -> int:
    """`benchwatch run --config CONFIG`: the watcher, until SIGTERM or SIGINT; SIGHUP reloads the config."""
    loaded = load_config(args.config)
    watch = loaded.config.watch
    if not watch.jobs and watch.discover is None:
        raise UsageError(f"{args.config}: nothing to watch: set watch.jobs or watch.discover")
    secrets = [*secrets_of(loaded.config), os.environ.get("RUNLOOP_API_KEY", "")]
    configure_logging(fmt=args.log_format, level=logging.DEBUG if args.verbose else logging.INFO, secrets=secrets)
    stop = stop_on_signals()
    service = Service(loaded)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, service.reload_soon)
    return await service.run(stop)
