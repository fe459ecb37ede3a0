"""One WebSocket peer connection around the sans-IO ``gossip.Link``.

The connection owns a writer task draining an outgoing queue (so producers
never interleave frames or block on a slow peer) and counts bytes as they would
cross the wire, WebSocket headers included, for the benchmarks.

The queue is capped in bytes (``queue_limit``). Past half of it the link stops
reading the peer's frames (``turn``) until it drains, so a peer that asks
and never reads is held up by its own TCP window; one that does not drain
within ``STALL_SECONDS`` is dropped, and so is one whose queue would pass the
cap. All links' queues share one ``OutboundBudget``: when their sum would pass
it, the link with the longest queue is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Final

from aiohttp import ClientWebSocketResponse, web

from bridge.core.budget import ByteQueue
from bridge.core.gossip import Link
from bridge.tasks import TaskSet

DEFAULT_QUEUE_LIMIT: Final = 8 * 1024 * 1024
STALL_SECONDS: Final = 30.0  # a link that does not drain its queue in this time is dropped
VIOLATOR_GRACE: Final = 0.25  # s a banned peer's link lingers for its BYE to leave
TURN_FRAMES: Final = 8  # frames read from one link before the others get a turn
Socket = web.WebSocketResponse | ClientWebSocketResponse


def ws_header_size(length: int, masked: bool) -> int:
    """RFC 6455 frame header bytes for a payload of ``length`` bytes."""
    ext = 0 if length < 126 else (2 if length < 65536 else 8)
    return 2 + ext + (4 if masked else 0)


class OutboundBudget:
    """Bytes queued on every link together; past ``limit`` the longest queue is dropped."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0
        self.conns: set[PeerConnection] = set()
        self.dropped = 0  # links dropped to keep within the budget

    def enforce(self) -> None:
        while self.queued > self.limit and self.conns:
            victim = max(self.conns, key=lambda c: c.queued)
            victim.abort()
            self.dropped += 1


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
        queue_limit: int = DEFAULT_QUEUE_LIMIT,
        budget: OutboundBudget | None = None,
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
        self.overflowed = False  # dropped because its queue passed the cap
        self._queue = ByteQueue(queue_limit)
        self._budget = budget if budget is not None else OutboundBudget(queue_limit)
        self._budget.conns.add(self)
        self._ready = asyncio.Event()  # something queued, or closing
        self._drained = asyncio.Event()  # queue under half the cap: read the peer
        self._drained.set()
        self._closing = False
        self._handshake = True
        self._reads = 0
        self.on_room: Callable[[PeerConnection], None] | None = None  # queue fell to low water
        self.closed = asyncio.Event()
        self._writer = tasks.spawn(self._write_loop(), name="link writer")

    @property
    def queued(self) -> int:
        """Bytes queued, not yet handed to the socket."""
        return self._queue.bytes

    @property
    def address(self) -> str:
        """The address others can dial for this peer, if known."""
        if self.dialled:
            return self.dialled
        return self.link.peer.listen if self.link.peer else ""

    def send(self, frame: bytes) -> None:
        if self.closed.is_set() or self._closing:
            return
        if not self._queue.push(frame):
            self.overflowed = True
            self.abort()  # not reading: what it asked for would only pile up
            return
        self._budget.queued += len(frame)
        if self._queue.bytes > self._queue.limit // 2:
            self._drained.clear()
        self._ready.set()
        self._budget.enforce()

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more bytes keep the queue under its low water (half the cap).

        Bodies are queued only while this holds, the rest wait in the link's
        ``peer_wants`` and go as the queue drains (``on_room``): a peer may ask for
        much more than the cap, and gets it at the pace it reads.
        """
        return not self._closing and self._queue.bytes + size <= self._queue.limit // 2

    async def turn(self) -> None:
        """Before each frame read: let the other links have a turn, and wait for our queue.

        A WebSocket hands over buffered frames without yielding to the event loop, so a
        peer that sends fast would otherwise hold the loop for as long as it sends.
        """
        self._reads += 1
        if self._reads % TURN_FRAMES == 0:
            await asyncio.sleep(0)
        if not self._drained.is_set():
            async with asyncio.timeout(STALL_SECONDS):  # TimeoutError: the link is dropped
                await self._drained.wait()

    def send_all(self, frames: list[bytes]) -> None:
        for f in frames:
            self.send(f)

    async def _write_loop(self) -> None:
        queue = self._queue
        try:
            while True:
                if not queue:
                    if self._closing:
                        break
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                frame = queue.pop()
                self._budget.queued -= len(frame)
                if queue.bytes <= queue.limit // 2:
                    self._drained.set()
                    if self.on_room is not None and self.link.peer_wants:
                        self.on_room(self)
                self.wire_out += len(frame) + ws_header_size(len(frame), self.outbound)
                self.frames_out += 1
                async with asyncio.timeout(STALL_SECONDS):  # a peer that stopped reading
                    await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            self._release()
            if self._handshake:
                with contextlib.suppress(Exception):
                    await self.ws.close()
            if self.transport is not None:
                self.transport.abort()  # type: ignore[attr-defined]  # the reader must see it
            self.closed.set()

    def _release(self) -> None:
        """Give back what is queued; nothing more will be sent."""
        self._closing = True
        self._budget.queued -= self._queue.clear()
        self._budget.conns.discard(self)
        self._drained.set()  # nothing left to wait for; the reader sees the socket close
        self.link.forget()  # now, not when the collector finds the link's cycles

    def drop_unread(self) -> None:
        """Free the frames the WebSocket read ahead and nobody will read.

        aiohttp keeps them in its reader, which sits in reference cycles until a full
        collection: under a churn of short links (each dropped for flooding) that was
        megabytes a link held for seconds. The reader's buffer is not public API; if
        it moves, nothing breaks and the collector frees it as before.
        """
        reader = getattr(self.ws, "_reader", None)
        buffer = getattr(reader, "_buffer", None)
        if buffer is not None and hasattr(buffer, "clear"):
            buffer.clear()

    async def close(
        self, last: bytes | None = None, *, grace: float = 2.0, handshake: bool = True
    ) -> None:
        """Send ``last`` (a BYE) after what is queued, then close (abort after ``grace`` s).

        While a WebSocket closes it reads, and drops, whatever the peer still sends
        until the peer answers the close: a flooding peer gets no ``handshake`` (the
        connection is cut once the BYE is written) and a short ``grace``.
        """
        if last is not None:
            self.send(last)
        self._handshake = handshake
        self._closing = True
        self._ready.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.closed.wait(), grace)
        self.abort()

    def abort(self) -> None:
        """Drop the connection now, without a goodbye (also simulates a crash)."""
        self._writer.cancel()
        self._release()
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
            "queued": self.queued,
            "since": int(self.since),
        }
