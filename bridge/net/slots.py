"""Inbound slots: the node takes at most ``max_peers - target_peers`` inbound links,
keeping ``target_peers`` slots for the links it dials itself, with per-host and
per-prefix caps; when full, a newcomer displaces the least useful inbound link
(the rules are in ``bridge.core.slots``). A slot is taken before the WebSocket
handshake, so a peer that never finishes it holds one too, and is the first
displaced.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.core import gossip as g
from bridge.core.gossip_wire import ByeReason
from bridge.core.slots import Inbound, choose_eviction, eviction_group, inbound_keys

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
