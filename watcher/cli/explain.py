"""`benchwatch explain ID`: why was this sent, or not? The decisions a running watcher recorded about an event (or
about each event of a notification), rule by rule, and where each notification's delivery stands."""

from __future__ import annotations

import argparse
import json

from watcher.cli.errors import UsageError
from watcher.cli.state import existing_state
from watcher.pipeline.explain import NotFound, explain_id, explanation_json, explanation_text
from watcher.store import open_store
from watcher.store.location import redact_url


async def explain(args: argparse.Namespace) -> int:
    """Print each explained event: its line, then every rule's decision and reason (one JSON object with --json)."""
    path = existing_state(args)
    async with open_store(path) as store:
        try:
            explained = await explain_id(store, args.id)
        except NotFound:
            where = redact_url(str(path))
            raise UsageError(f"no event or notification {args.id!r} in {where} (or the prefix is ambiguous)") from None
    if args.json:
        print(json.dumps([explanation_json(item) for item in explained], indent=2))
        return 0
    print("\n\n".join("\n".join(explanation_text(item)) for item in explained))
    return 0
