"""A light node's side of light nodes by shard (docs/sharding.md, "Light nodes").

A light node (``NodeConfig.light``) keeps no store for others. Once told which shard
keys to watch and which tags to keep (``Node.watch_shards``: its identities' shard
keys, and the watch table's tags), it asks each full peer, by WATCH_SHARD, for the
prefixes of those keys at the depth that peer carries (or ``NodeConfig.light_depth``
if deeper: ``gossip_light.light_prefixes``), never for a tag. The peer reconciles the
prefix with the ids this node has fetched and announces what it lacks; the node fetches
every body announced, keeps those under a watched tag in its store (RAM or SQLite, as
``[p2p] storage`` says) and drops the rest after reading them. The id of every envelope
fetched, kept or dropped, stays in ``ids`` until it expires, so nothing is fetched
twice and the reconciliation does not tell the peer which ones were kept.

Each link is asked again every ``REFRESH`` seconds ± 25 % (the full peer reconciles again: a
catch-up after anything missed, and the ids it announced that were not fetched for want
of budget are announced again), and at once on every new link: a node back after days
fetches what arrived while it was away, as long as it has not expired.

Ids announced beyond the request budgets wait in ``backlog`` (at most ``MAX_BACKLOG``)
and are asked for each maintenance round as the budgets refill (about 200 bodies a
second a link), so a catch-up does not wait for the next WATCH_SHARD.

With ``NodeConfig.light_ids`` (the daemon sets it with ``storage = "sqlite"``) the ids
are written to that file (0600, 42 bytes an id: shard key, expiry, id) when the node
stops and every ``SAVE_EVERY`` seconds, and read back at start, so a restart does not
fetch the prefix again; a file of the wrong size is ignored, an expired id skipped.

Bounds: ``max_ids`` ids remembered (about 350 bytes each in RAM with the prefix sums,
measured: 90 MiB at the cap), the soonest to expire forgotten first when full, a
sixteenth at a time (one forgotten may be fetched once more); requests in flight are the
node's usual budgets; at most 16 prefixes a link.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Final

from bridge.core.envelope import Envelope
from bridge.core.errors import LocalProtocolError
from bridge.core.gossip_light import light_prefixes
from bridge.core.reconcile import KEY_SIZE
from bridge.core.shards import Prefix, shard_of_tag
from bridge.net.light_own import OwnEnvelopes
from bridge.store.index import SortedIndex, key_id
from bridge.store.keystore import write_private

if TYPE_CHECKING:
    from bridge.net.node import Node
    from bridge.net.peerlink import PeerConnection

log = logging.getLogger(__name__)
REFRESH: Final = 60.0  # seconds between WATCH_SHARDs of a prefix on one link (± 25 %)
SAVE_EVERY: Final = 600.0  # seconds between writes of the ids (``light_ids``)
MAX_IDS: Final = 262_144  # ids of envelopes fetched, remembered until they expire
MAX_BACKLOG: Final = 65_536  # ids announced to us, not yet asked for (request budgets)
Keep = Callable[[bytes], bool]  # a recipient tag -> keep the envelope?
Keys = Iterable[int] | Callable[[], Iterable[int]]  # the shard keys, or how to find them


class LightWatch:
    def __init__(self, node: Node, max_ids: int = MAX_IDS) -> None:
        self.node = node
        self.max_ids = max_ids
        self.keys: tuple[int, ...] = ()  # the shard keys watched
        self._keys_of: Callable[[], Iterable[int]] | None = None  # asked again each round
        self.keep: Keep | None = None  # None: not told yet, nothing is fetched
        self.ids = SortedIndex()  # what was fetched, kept or not: the reconciliation's set
        self._known: set[bytes] = set()
        self._asked: dict[PeerConnection, float] = {}  # link -> when last asked
        self.backlog: dict[bytes, None] = {}  # announced, beyond our request budgets
        self.dropped = 0  # bodies read and not kept
        self._saved = time.monotonic()
        self.own = OwnEnvelopes(node)  # published here, until a full node has them

    def load(self) -> None:
        """What the store kept across a restart counts as fetched, and so do the ids
        saved when the node last stopped (``light_ids``)."""
        for key in self.node.store.index.iter_keys():
            if key_id(key) not in self._known:
                self._add_key(key)
        path = self.node.config.light_ids
        if path:
            self._read(Path(path))
        self.own.load()

    def _read(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            if size % KEY_SIZE or size > self.max_ids * KEY_SIZE:
                log.warning("%s is not a list of ids (%d bytes): not read", path, size)
                return
            data = path.read_bytes()
        except FileNotFoundError:
            return
        except OSError as e:
            log.warning("the ids in %s could not be read: %s", path, e)
            return
        now = int(time.time())
        for at in range(0, len(data), KEY_SIZE):
            key = data[at : at + KEY_SIZE]
            if int.from_bytes(key[2:10], "big") > now and key_id(key) not in self._known:
                try:
                    self._add_key(key)
                except LocalProtocolError:
                    continue  # an expiry past any real one: not ours

    async def save(self) -> None:
        """Write the ids to ``light_ids`` (off the event loop), if set."""
        path = self.node.config.light_ids
        self._saved = time.monotonic()
        if path:
            data = b"".join(self.ids.iter_keys())
            await asyncio.to_thread(write_private, Path(path), data)
            await self.own.save()

    def set(self, keys: Keys, keep: Keep) -> None:
        """Watch these shard keys (a callable: asked again each round, so an identity
        added later is watched too) and keep what ``keep`` accepts."""
        self._keys_of = keys if callable(keys) else None
        self.keys = tuple(sorted(set(keys() if callable(keys) else keys)))
        self.keep = keep
        self._asked.clear()
        for c in self.node.active_conns():
            self.ask(c, time.monotonic())

    def prefixes(self, conn: PeerConnection) -> list[Prefix]:
        peer = conn.link.peer
        if peer is None or peer.light or peer.version < 2 or self.keep is None:
            return []
        return light_prefixes(self.keys, peer.shards, self.node.config.light_depth)

    def ask(self, conn: PeerConnection, now: float) -> None:
        """WATCH_SHARD each of our prefixes this full peer carries; offer it our own."""
        self.own.offer(conn)
        wanted = self.prefixes(conn)
        if not wanted or not conn.link.active:
            return
        self._asked[conn] = now + random.uniform(-0.25, 0.25) * REFRESH  # not on the minute
        for p in wanted:
            conn.send(conn.link.watch_shard(p))

    def refresh(self, now: float) -> None:
        """Each maintenance round: forget closed links, ask again where due, forget ids
        of envelopes that have expired."""
        if self._keys_of is not None:
            keys = tuple(sorted(set(self._keys_of())))
            if keys != self.keys:  # an identity came or went: every link asked again
                self.keys = keys
                self._asked.clear()
        live = set(self.node.conns)
        self._asked = {c: t for c, t in self._asked.items() if c in live}
        self.own.settle(int(time.time()))
        for c in self.node.active_conns():
            if now - self._asked.get(c, float("-inf")) >= REFRESH:
                self.ask(c, now)
            else:
                self.own.offer(c)
        self._drain()
        for key in self.ids.pop_expired(int(time.time())):
            self._known.discard(key_id(key))
        if self.node.config.light_ids and now - self._saved >= SAVE_EVERY:
            self.node.tasks.spawn(self.save(), name="light node's ids saved")

    def later(self, ids: Iterable[bytes]) -> None:
        """Announced ids the request budgets left out: asked for in the next rounds."""
        backlog = self.backlog
        for i in ids:
            if len(backlog) >= MAX_BACKLOG:
                break  # the next WATCH_SHARD's reconciliation finds the rest
            backlog[i] = None

    def _drain(self) -> None:
        ids, self.backlog = tuple(self.backlog), {}
        if not ids:
            return
        for c in self.node.active_conns():
            held = tuple(i for i in ids if i in c.link.peer_has)
            if held:
                self.node.relay.request(c, held)  # what still does not fit comes back

    def __contains__(self, eid: object) -> bool:
        return eid in self._known

    def fetched(self, env: Envelope, eid: bytes) -> bool:
        """A body under a watched prefix has been read: remember its id; True if it is to
        be kept (its tag is watched)."""
        if eid not in self._known:
            self.ids.add(shard_of_tag(env.tag), env.expiry, eid)
            self._known.add(eid)
            while len(self._known) > self.max_ids:
                self._forget_soonest()
        keep = self.keep is not None and self.keep(env.tag)
        if not keep:
            self.dropped += 1
        return keep

    def _add_key(self, key: bytes) -> None:
        self.ids.add(int.from_bytes(key[:2], "big"), int.from_bytes(key[2:10], "big"),
                     key_id(key))
        self._known.add(key_id(key))

    def _forget_soonest(self) -> None:
        """Full: forget the sixteenth of the ids that expire soonest (one pass a batch)."""
        keys = sorted(self.ids.iter_keys(), key=lambda k: k[2:10])[: self.max_ids // 16 + 1]
        for k in keys:
            self.ids.remove(int.from_bytes(k[:2], "big"), int.from_bytes(k[2:10], "big"),
                            key_id(k))
            self._known.discard(key_id(k))

    def health(self) -> dict[str, object]:
        return {"watched_keys": len(self.keys), "ids_fetched": len(self._known),
                "dropped": self.dropped,
                "asked": sorted({str(p) for c in self._asked for p in c.link.watching})}
