"""Waiting for another process's write to an SQLite file without waking to look: Linux's inotify, through
inotify_simple (a small, long-kept binding: no thread, one file descriptor the event loop watches).

A running watcher must notice when the CLI commits to its file (`benchwatch deliveries retry`: sent within a
second). Looking five times a second was five wake-ups of an idle process every second — on the VMs here a wake-up
from idle costs 0.1–0.17 ms, and a watcher at rest on ten jobs spends about 10 ms a second in all. With inotify the
listener sleeps until a file of the database is written. Where inotify cannot be had (another system, the
per-user limit of watches reached) `wait` returns at once and the caller's own interval paces the looks, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from inotify_simple import INotify

log = logging.getLogger("benchwatch.store")

# A look even when no write was seen: inotify misses nothing on a local file system, but a folder replaced or
# moved under the watcher would go unseen without it.
SAFETY_LOOK_S: Final = 30.0


class FileChanges:
    """Writes to the files of the SQLite database at `path` (the database, its `-wal` and `-journal` files), seen
    through inotify on their folder (the `-wal` file comes and goes). Close it when done."""

    def __init__(self, path: str) -> None:
        folder, name = os.path.split(os.path.abspath(path))
        self._names = frozenset({name, f"{name}-wal", f"{name}-journal"})
        self._inotify: INotify | None = None
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # not Linux: the caller's interval paces the looks
            return
        self._overflow = int(flags.Q_OVERFLOW)
        watched = flags.MODIFY | flags.CREATE | flags.MOVED_TO | flags.DELETE
        try:
            self._inotify = INotify(nonblocking=True)
            self._inotify.add_watch(folder, watched)
        except OSError as exc:  # e.g. fs.inotify.max_user_watches reached: looked at on the caller's interval
            log.info("watching %s for other processes' commits by looking at it (inotify: %s)", path, exc)
            self.close()

    @property
    def watching(self) -> bool:
        """Whether writes are seen as they happen (else `wait` returns at once)."""
        return self._inotify is not None

    async def wait(self) -> None:
        """Until one of the database's files was written (or created, or removed) since the last call, or
        SAFETY_LOOK_S passed; at once without inotify. Writes to other files of the folder do not count."""
        while self._inotify is not None and not self._written():
            try:
                async with asyncio.timeout(SAFETY_LOOK_S):
                    await self._readable(self._inotify.fileno())
            except TimeoutError:
                return

    @staticmethod
    async def _readable(fd: int) -> None:
        """Until `fd` has something to read."""
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await readable
        finally:
            loop.remove_reader(fd)

    def _written(self) -> bool:
        """Whether the queued events (read and so cleared) name one of the database's files; an overflowed queue
        counts as written."""
        assert self._inotify is not None
        events = self._inotify.read(timeout=0)
        return any(event.name in self._names or event.mask & self._overflow for event in events)

    def close(self) -> None:
        """Stop watching."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
