"""Inbound slots: the node takes at most ``max_peers - target_peers`` inbound links,
keeping ``target_peers`` slots for the links it dials itself, with per-host and
per-prefix caps; when full, a newcomer displaces the least useful inbound link
(the rules are in ``bridge.core.slots``). A slot is taken before the WebSocket
handshake, so a peer that never finishes it holds one too, and is the first
displaced.

Before a slot, admission (``AdmittingListener``): a new TCP connection is
charged to its prefix's and the node's buckets (``bridge.core.slots.Admission``)
the moment it is accepted; one refused is reset there, before asyncio makes a
transport for it or aiohttp reads a byte of the request. This covers every path
of the P2P port (``/p2p``, the direct-delivery endpoints, ``/status``): a request
needs a connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bridge.core import gossip as g
from bridge.core.gossip_wire import ByeReason
from bridge.core.slots import (
    Admission,
    Inbound,
    choose_eviction,
    eviction_group,
    inbound_keys,
)

if TYPE_CHECKING:
    from bridge.net.node import Node
    from bridge.net.peerlink import PeerConnection


@dataclass(eq=False)
class Slot:
    key: int
    remote: str
    keys: tuple[str, str] | None  # (host, prefix) caps it counts in; None: none
    group: str
    transport: asyncio.BaseTransport | None
    since: float = field(default_factory=time.monotonic)
    conn: PeerConnection | None = None
    hello_at: float | None = None
    last_novel: float = -math.inf

    def view(self) -> Inbound:
        latency = self.hello_at - self.since if self.hello_at is not None else math.inf
        return Inbound(self.key, self.group, self.since, self.hello_at is not None, latency,
                       self.last_novel)


class InboundSlots:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.taken: dict[int, Slot] = {}
        self.evictions = 0
        self._secret = os.urandom(32)
        self._next = 0

    @property
    def limit(self) -> int:
        cfg = self.node.config
        return max(1, cfg.max_peers - cfg.target_peers)

    def take(self, remote: str, transport: asyncio.BaseTransport | None) -> Slot | None:
        """A slot for a new inbound link from ``remote``, or None: refuse it."""
        cfg = self.node.config
        keys = inbound_keys(remote)
        if keys is not None:
            for i, cap in ((0, cfg.max_inbound_per_host), (1, cfg.max_inbound_per_prefix)):
                same = [s for s in self.taken.values() if s.keys and s.keys[i] == keys[i]]
                if len(same) >= cap:
                    waiting = [s for s in same if s.hello_at is None]
                    if not waiting:
                        return None
                    self.evict(min(waiting, key=lambda s: s.since))
        if len(self.taken) >= self.limit:
            victim = choose_eviction([s.view() for s in self.taken.values()], self._secret)
            if victim is None:
                return None
            self.evict(self.taken[victim])
        self._next += 1
        slot = Slot(self._next, remote, keys, eviction_group(remote), transport)
        self.taken[slot.key] = slot
        return slot

    def release(self, slot: Slot) -> None:
        self.taken.pop(slot.key, None)

    def evict(self, slot: Slot) -> None:
        """Free ``slot`` now and close its link (BYE if it finished HELLO)."""
        self.release(slot)
        self.evictions += 1
        conn = slot.conn
        if conn is not None and conn.link.peer is not None and conn.link.state is g.State.ACTIVE:
            self.node.links.refuse(conn, ByeReason.NORMAL, "evicted: no free slot")
        elif conn is not None:
            conn.abort()
        elif slot.transport is not None:
            slot.transport.abort()  # type: ignore[attr-defined]



_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, leaves no TIME_WAIT
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
ACCEPT_BATCH: Final = 100  # connections taken per wake-up of a listening socket
BACKLOG: Final = 128


class AdmittingListener:
    """The node's listening sockets, accepting by hand so that a refusal costs nothing.

    asyncio's own server makes a task, a transport and a protocol for every
    connection before anyone may look at it (about 0.1 ms of CPU). Here the
    listening socket is read directly: ``accept``, the admission check on the
    peer's address, and a refused connection is closed at once with a reset —
    two system calls and a dictionary lookup. An admitted one is handed to
    ``loop.connect_accepted_socket`` with aiohttp's protocol factory, as the
    server would have.
    """

    def __init__(self, admission: Admission, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self.admission = admission
        self.factory = factory
        self.socks: list[socket.socket] = []
        self._pending: set[asyncio.Task[object]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on every address ``host`` names (all interfaces if empty); the port."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
        seen: set[tuple[int, str]] = set()
        try:
            for family, kind, proto, _, addr in infos:
                if (family, str(addr[0])) in seen:
                    continue
                seen.add((family, str(addr[0])))
                sock = socket.socket(family, kind, proto)
                self.socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((addr[0], port, *addr[2:]))
                port = port or int(sock.getsockname()[1])  # one port for every address
                sock.listen(BACKLOG)
                sock.setblocking(False)
        except OSError:
            self.close()
            raise
        for sock in self.socks:
            loop.add_reader(sock.fileno(), self._accept, sock)
        return port

    def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:  # stop taking any for a second
                    loop.remove_reader(sock.fileno())
                    loop.call_later(1.0, self._resume, sock)
                    return
                raise
            remote = str(addr[0]) if isinstance(addr, tuple) and addr else ""
            if not self.admission.admit(remote, time.monotonic()):
                with contextlib.suppress(OSError):
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                conn.close()
                continue
            conn.setblocking(False)
            task: asyncio.Task[object] = loop.create_task(
                loop.connect_accepted_socket(self.factory, conn))
            self._pending.add(task)
            task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[object]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # a connection lost while it was set up: nothing to keep

    def _resume(self, sock: socket.socket) -> None:
        if sock in self.socks and sock.fileno() >= 0:
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self.socks:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
                sock.close()
        self.socks.clear()
        for task in self._pending:
            task.cancel()
