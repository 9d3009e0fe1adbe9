"""A PostgreSQL transaction in as few round trips as it needs: one, or one more per result read in the middle.

psycopg's `transaction()` inside a pipeline syncs as it begins, before its COMMIT and after it (a nested pipeline
each time): a transaction of three statements cost four round trips, counted by `tests/pgturns.py`. Here BEGIN and
COMMIT are statements of the pipeline like the others, and the pipeline's one Sync at the end sends them all.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncPipeline
from psycopg.pq import TransactionStatus

_OPEN = (TransactionStatus.INTRANS, TransactionStatus.INERROR)


@contextlib.asynccontextmanager
async def one_transaction(conn: psycopg.AsyncConnection[Any]) -> AsyncIterator[AsyncPipeline]:
    """`async with ... as pipeline`: the block's statements in one transaction on `conn` (in autocommit), sent with
    BEGIN and COMMIT when the block ends. A block that must read a result before it ends calls `pipeline.sync()` (a
    round trip; the transaction stays open); results read after the block cost nothing more. If a statement or the
    block fails, nothing of it is committed: the transaction is rolled back, and the error raised.

    `conn` must not prepare statements (`prepare_threshold=None`): after a statement fails, the server skips the
    Parse of those queued behind it while psycopg counts them as prepared, and their next run fails ("prepared
    statement _pg3_4 does not exist"); psycopg's own `transaction()` clears them at each rollback, this does not."""
    if conn.prepare_threshold is not None:
        raise ValueError("one_transaction needs a connection that prepares no statement (prepare_threshold=None)")
    try:
        async with conn.pipeline() as pipeline:
            await conn.execute(b"BEGIN")
            yield pipeline
            await conn.execute(b"COMMIT")
    finally:
        # A statement failed (the server skipped the rest, COMMIT included), or the block raised before COMMIT:
        # the transaction is still open on the connection. A connection that broke meanwhile has none to end.
        if conn.info.transaction_status in _OPEN:
            with contextlib.suppress(psycopg.Error):
                await conn.execute(b"ROLLBACK")
