"""A light node's own envelopes, until a full node has taken each (docs/gossip.md,
"Light nodes").

A full node reconciles when a link comes up, so what it published while it had no link
leaves then. A light node starts no reconciliation, and its full peers never ask it for
what it holds (that would tell which envelopes it kept). So it remembers each envelope
published on it (``OwnEnvelopes.add``) and announces it to every full peer that carries
its shard — on each new link and each maintenance round (a link announces an id once)
— until one of them has asked for the body and got it; then it has left, and is
forgotten. It is forgotten at its expiry too.

Bounds: ``MAX_OWN`` ids (the oldest forgotten first). With ``NodeConfig.light_ids`` set
(``storage = "sqlite"``) they are also written to ``light-own.bin`` beside it (0600, 42
bytes each: shard key, expiry, id) soon after each one is added and at every stop, and
read back at start, so what was written just before a restart still leaves once a link
comes up; the envelopes themselves are in the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bridge.core.envelope import Envelope
from bridge.core.reconcile import KEY_SIZE, make_key
from bridge.core.shards import shard_of_tag
from bridge.store.index import key_id
from bridge.store.keystore import write_private

if TYPE_CHECKING:
    from bridge.net.node import Node
    from bridge.net.peerlink import PeerConnection

log = logging.getLogger(__name__)
MAX_OWN: Final = 4096
FILE_NAME: Final = "light-own.bin"


class OwnEnvelopes:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.ids: dict[bytes, tuple[int, int]] = {}  # id -> (shard key, expiry), oldest first
        self._saving: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path | None:
        ids = self.node.config.light_ids
        return Path(ids).with_name(FILE_NAME) if ids else None

    def add(self, env: Envelope, eid: bytes) -> None:
        self.ids[eid] = (shard_of_tag(env.tag), env.expiry)
        while len(self.ids) > MAX_OWN:
            del self.ids[next(iter(self.ids))]
        if self.path is not None and (self._saving is None or self._saving.done()):
            self._saving = self.node.tasks.spawn(self.save(), name="light node's own ids")

    def offer(self, conn: PeerConnection) -> None:
        """Announce to this full peer what it carries of ours (a link announces an id once)."""
        peer, store = conn.link.peer, self.node.store
        if peer is None or peer.light or not conn.link.active:
            return
        ids = [i for i, (shard, _) in self.ids.items()
               if conn.link.peer_carries(shard) and i not in conn.link.peer_has and i in store]
        if ids:
            self.node.relay.offer(conn, ids)

    def settle(self, now: int) -> None:
        """Forget what has expired and what a full peer has taken (it has left)."""
        taken = [i for i, (_, expiry) in self.ids.items() if expiry <= now
                 or any(i in c.link.sent for c in self.node.conns)]
        for i in taken:
            del self.ids[i]

    async def save(self) -> None:
        path = self.path
        if path is not None:
            data = b"".join(make_key(s, e, i) for i, (s, e) in self.ids.items())
            await asyncio.to_thread(write_private, path, data)

    def load(self) -> None:
        path = self.path
        if path is None:
            return
        try:
            data = path.read_bytes() if path.stat().st_size <= MAX_OWN * KEY_SIZE else b"?"
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("the own ids in %s could not be read: %s", path, e)
            return
        if len(data) % KEY_SIZE:
            log.warning("%s is not a list of ids: not read", path)
            return
        now = int(time.time())
        for at in range(0, len(data), KEY_SIZE):
            key = data[at : at + KEY_SIZE]
            expiry = int.from_bytes(key[2:10], "big")
            if now < expiry < 1 << 63 and key_id(key) in self.node.store:
                self.ids[key_id(key)] = (int.from_bytes(key[:2], "big"), expiry)
