"""Group commit for a server store: writes that arrive while one batch is being written wait for the next, and are
written together — one transaction for many callers, each returning once its own batch is durable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from watcher.store.errors import StoreError

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Batches `submit`ted items into calls of `write(batch)`, one batch at a time.

    A batch is written whole or not at all (the caller's `write` runs it in one transaction). When it fails with a
    `StoreError` (the database is away, or cannot write), every caller of the batch hears it: the others would
    fail alike. Any other error belongs to one item (a value the database refuses, a bug): the batch's items are
    then written one by one, so only the item at fault fails."""

    def __init__(self, write: Callable[[list[T]], Awaitable[None]]) -> None:
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write `item` with whatever else is waiting; returns once it is written, or raises why it was not."""
        future = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)  # a cancelled caller's outcome is nobody's to read
        self._queue.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="group commit")
        # The write goes on if this caller is cancelled: its batch may hold others (as a thread finishes a commit).
        await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._write([item for item, _ in batch])
        except StoreError as exc:
            _settle(batch, exc)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch, exc)
                return
            for one in batch:  # the item at fault fails alone; the others are written
                await self._write_batch([one])
        except BaseException:  # cancelled (the loop is closing): nobody waits for what was not written
            for _, future in batch:
                future.cancel()
            raise
        else:
            _settle(batch, None)


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _settle(batch: list[tuple[T, asyncio.Future[None]]], error: Exception | None) -> None:
    for _, future in batch:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
