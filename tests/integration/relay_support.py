"""A TCP relay between a client and a server that can swallow what the server writes.

For cutting a connection at a chosen point: ``hold()`` makes the relay keep back
everything the server writes from then on (``wait_held`` waits until a given amount
came), and ``cut()`` drops both sides at once, as a dead Wi-Fi link does: the client
never sees what was held, the server has written it. TLS passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib


class Relay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.holding = False
        self.held = asyncio.Event()
        self.held_bytes = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self._writers += [client_w, server_w]
        for task in (self._pump(client_r, server_w, False), self._pump(server_r, client_w, True)):
            t = asyncio.ensure_future(task)
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    from_server: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                if from_server and self.holding:
                    self.held_bytes += len(chunk)
                    self.held.set()
                    continue
                writer.write(chunk)
                await writer.drain()
        if not writer.is_closing():
            writer.close()

    async def wait_held(self, at_least: int, timeout: float = 30.0) -> None:
        """Until the server has written at least ``at_least`` bytes since ``hold()``
        (a long message: the small stanzas that may come too cannot add up to it)."""
        async def wait() -> None:
            while self.held_bytes < at_least:
                self.held.clear()
                await self.held.wait()

        await asyncio.wait_for(wait(), timeout)

    def hold(self) -> None:
        self.holding = True
        self.held_bytes = 0
        self.held.clear()

    def cut(self) -> None:
        """Drop every connection through the relay (both sides, no goodbye)."""
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
        self.holding = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
