"""Link delay for real daemons on one machine: TCP relays on loopback that hold every
chunk a fixed time in each direction before passing it on.

The kernel here has no netem (no delay qdisc), so a daemon is told to dial a relay's
port instead of its peer's, and the relay forwards to the peer. Each relay runs on an
event loop of its own, in a thread, so a test that blocks (starting processes, reading
files) does not stretch the delays. Order is kept within a direction; nothing is lost
or rate-limited; a connection the far end closes or resets is closed on the near end
too, as the kernel would.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass
from typing import Any

CHUNK = 64 * 1024


@dataclass
class LinkStats:
    """What crossed one relay: connections opened through it and bytes each way."""

    target: int
    delay: float
    connections: int = 0
    forward: int = 0  # dialler → target
    back: int = 0


class DelayRelay:
    """Relays from fresh loopback ports to target ports, each with its one-way delay.

    Use as a context manager; ``link(target_port, delay)`` gives the port to dial."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: dict[int, LinkStats] = {}  # relay port -> its figures
        self._servers: list[asyncio.Server] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self.loop.run_forever, name="delay relay",
                                        daemon=True)

    def __enter__(self) -> DelayRelay:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._close(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def link(self, target_port: int, delay: float) -> int:
        """A new relay to 127.0.0.1:``target_port`` holding each chunk ``delay`` seconds
        each way; the port it listens on."""
        return int(self._call(self._listen(target_port, delay)))

    async def _listen(self, target: int, delay: float) -> int:
        stats = LinkStats(target, delay)

        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._pipes.add(task)
            try:
                await self._pipe(reader, writer, stats)
            finally:
                self._pipes.discard(task)

        server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self._servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        self.links[port] = stats
        return port

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    stats: LinkStats) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", stats.target)
        except OSError:  # the target is down: refuse, as it would
            writer.transport.abort()
            return
        stats.connections += 1
        ways = [asyncio.ensure_future(self._one_way(reader, up_writer, stats, "forward")),
                asyncio.ensure_future(self._one_way(up_reader, writer, stats, "back"))]
        try:  # both ends closed, or one way failed (a reset): then both go
            await asyncio.wait(ways, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for way in ways:
                way.cancel()
            for w in (writer, up_writer):
                w.transport.abort()
            await asyncio.gather(*ways, return_exceptions=True)

    async def _one_way(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       stats: LinkStats, direction: str) -> None:
        """Read as it comes, write each chunk once its delay has passed; at the end of
        the stream, half-close the other side after the last chunk."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                while data := await src.read(CHUNK):
                    queue.put_nowait((loop.time() + stats.delay, data))
            finally:
                queue.put_nowait(None)

        reading = asyncio.ensure_future(read())
        try:
            while (item := await queue.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                dst.write(data)
                setattr(stats, direction, getattr(stats, direction) + len(data))
                await dst.drain()
            await reading  # raises what ended the reading (a reset), if anything did
            if dst.can_write_eof():
                dst.write_eof()
        finally:
            reading.cancel()

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._pipes):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._pipes, return_exceptions=True)
