"""A TCP proxy in front of the machine's PostgreSQL server that counts round trips: the messages with which a client
asks the server for its answers — Sync (the end of an extended query, or of a pipeline's batch), Flush (a pipeline
reading a result before its Sync) and a simple Query. Asks sent one after the other, with no answer between them, are
one wait of the client's: one round trip, however many statements went before it."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator

UPSTREAM = ("127.0.0.1", 5432)
ASKS = frozenset(b"SHQ")  # Sync, Flush, Query


class RoundTrips:
    """`turns`: the round trips of every client through the proxy; `connections`: the connections made."""

    def __init__(self) -> None:
        self.turns = 0
        self.connections = 0
        self.port = 0

    def url(self, database: str, query: str = "") -> str:
        """A URL of `database` on the server, through the proxy (in plain text: the proxy reads the messages)."""
        plain = "sslmode=disable&gssencmode=disable"
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?{plain}{'&' + query if query else ''}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*UPSTREAM)
        answered = True  # since the last ask counted

        async def to_server() -> None:
            nonlocal answered
            # The startup message has no type byte: its length, then the rest; every message after it is typed.
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            up_writer.write(struct.pack("!I", length) + await reader.readexactly(length - 4))
            while kind := await reader.read(1):
                (length,) = struct.unpack("!I", await reader.readexactly(4))
                if kind[0] in ASKS and answered:
                    self.turns += 1
                    answered = False
                up_writer.write(kind + struct.pack("!I", length) + await reader.readexactly(length - 4))
                await up_writer.drain()

        async def to_client() -> None:
            nonlocal answered
            while data := await up_reader.read(65536):
                answered = True
                writer.write(data)
                await writer.drain()

        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await asyncio.gather(to_server(), to_client())
        up_writer.close()
        writer.close()


@contextlib.asynccontextmanager
async def round_trips() -> AsyncIterator[RoundTrips]:
    """A counting proxy on a free port, for the block."""
    counter = RoundTrips()
    server = await asyncio.start_server(counter.serve, "127.0.0.1", 0)
    counter.port = server.sockets[0].getsockname()[1]
    async with server:
        yield counter
        server.close()
