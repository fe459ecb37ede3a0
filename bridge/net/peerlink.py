"""One WebSocket peer connection around the sans-IO ``gossip.Link``.

The connection owns a writer task draining an outgoing queue (so producers
never interleave frames or block on a slow peer) and counts bytes as they would
cross the wire, WebSocket headers included, for the benchmarks. A peer whose
queue grows past ``MAX_QUEUED`` frames is not reading and is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Final

from aiohttp import ClientWebSocketResponse, web

from bridge.core.gossip import Link
from bridge.tasks import TaskSet

MAX_QUEUED: Final = 10_000
Socket = web.WebSocketResponse | ClientWebSocketResponse


def ws_header_size(length: int, masked: bool) -> int:
    """RFC 6455 frame header bytes for a payload of ``length`` bytes."""
    ext = 0 if length < 126 else (2 if length < 65536 else 8)
    return 2 + ext + (4 if masked else 0)


class PeerConnection:
    def __init__(
        self,
        ws: Socket,
        link: Link,
        *,
        outbound: bool,
        remote: str,
        dialled: str,
        transport: asyncio.BaseTransport | None,
        tasks: TaskSet,
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.link = link
        self.outbound = outbound  # we dialled it (client frames are masked)
        self.remote = remote  # remote IP as seen on the socket
        self.dialled = dialled  # the "host:port" we dialled, or ""
        self.since = time.time()
        self.wire_out = 0
        self.frames_out = 0
        self.pending_announce: list[bytes] = []
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer = tasks.spawn(self._write_loop(), name="link writer")
        self.closed = asyncio.Event()

    @property
    def address(self) -> str:
        """The address others can dial for this peer, if known."""
        if self.dialled:
            return self.dialled
        return self.link.peer.listen if self.link.peer else ""

    def send(self, frame: bytes) -> None:
        if self.closed.is_set():
            return
        if self._queue.qsize() >= MAX_QUEUED:
            self.abort()
            return
        self._queue.put_nowait(frame)

    def send_all(self, frames: list[bytes]) -> None:
        for f in frames:
            self.send(f)

    async def _write_loop(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                if frame is None:
                    break
                self.wire_out += len(frame) + ws_header_size(len(frame), self.outbound)
                self.frames_out += 1
                await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.closed.set()

    async def close(self, last: bytes | None = None) -> None:
        """Send ``last`` (a BYE) after what is queued, then close."""
        if last is not None:
            self.send(last)
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 2.0)
        self.abort()

    def abort(self) -> None:
        """Drop the connection now, without a goodbye (also simulates a crash)."""
        self._writer.cancel()
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]
        self.closed.set()

    def info(self) -> dict[str, object]:
        peer = self.link.peer
        return {
            "address": self.address,
            "remote": self.remote,
            "direction": "out" if self.outbound else "in",
            "node_id": peer.node_id.hex() if peer else "",
            "light": bool(peer and peer.light),
            "min_bits": peer.min_bits if peer else 0,
            "state": self.link.state.value,
            "bytes_in": self.link.bytes_in,
            "bytes_out": self.wire_out,
            "since": int(self.since),
        }
