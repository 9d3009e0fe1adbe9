"""`benchwatch replay`: recorded snapshots through the real diff (and rules, with --config)."""

from __future__ import annotations

import argparse
import sys

from watcher.app.config import load_config
from watcher.app.replay import replay as replay_file


async def replay(args: argparse.Namespace) -> int:
    """`benchwatch replay FILE`: events of recorded snapshots, as JSON lines on stdout."""
    config = load_config(args.config) if args.config is not None else None
    await replay_file(args.file, sys.stdout, state=args.state, config=config, notes=sys.stderr)
    return 0
