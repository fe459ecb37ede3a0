"""A simulated node: the real ``bridge.core.gossip.Link`` per peer, driven on virtual
time the way ``bridge.net.relay`` and ``bridge.net.node`` drive it.

What is the real core here: every frame that crosses a simulated connection is
built by ``Link`` (``gossip_wire`` encodes it) and parsed by the peer's ``Link``,
with its transition table, budgets, ``peer_has`` memory, the unrequested-body
rule and the shard rules (HELLO version 2 carries the node's prefixes, a body
outside them is a violation, a body outside the peer's is never sent); every
reconciliation is ``Reconciler`` over the store's real ``SortedIndex``, one
session per prefix both ends carry. What this layer does in place of
``bridge.net`` (and says so): it keeps no asyncio, no sockets and no outbound
queue (the channel's bandwidth paces the bytes); it does not check proof of work
or signatures (the envelopes are synthetic: a real header, random body, nonce 0);
it finds a shard's carriers in a directory (the iterative lookup is not built). A
hand-off is the real hand-off link (``bridge.core.gossip_handoff``): the sender's
HELLO has the hand-off flag, and the two ``Link``s allow on it what they allow a
daemon's.

Behaviours: ``honest``; ``dropper`` (takes every body it can get, stores none,
announces it anyway and never serves a WANT: a black hole that also wastes the
requests of whoever believes it); ``flooder`` (an honest relay that also injects
valid-looking spam envelopes and announces ids it never serves).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import TYPE_CHECKING, Final

from bridge.core import gossip as g
from bridge.core import shards as sh
from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_wire import MAX_IDS, ByeReason, FrameType, Hello
from bridge.store.index import SortedIndex, key_id
from tests.sim.engine import Channel

if TYPE_CHECKING:
    from tests.sim.world import World

ALL: Final = -1  # the one "shard" of full replication
REQUEST_TIMEOUT: Final = 10.0  # as bridge.net.relay
REQUEST_FORGET: Final = 60.0
RECONCILE_ANNOUNCE: Final = 4 * MAX_IDS
SERVE_CHUNK: Final = 256
WS_HEADER: Final = 4  # an average WebSocket frame header (2..14 bytes)
_PER_ENVELOPE: Final = frozenset((FrameType.HAVE, FrameType.WANT, FrameType.ENVELOPE))


class Conn:
    """One end of a connection: a channel towards the peer and its Link."""

    __slots__ = ("ch", "common", "handoff", "link", "node", "open", "other", "outbound", "peer",
                 "transient")

    def __init__(self, node: SimNode, peer: SimNode, ch: Channel, outbound: bool) -> None:
        self.node = node
        self.peer = peer
        self.ch = ch
        self.outbound = outbound
        self.other: Conn | None = None
        self.link: g.Link | None = None
        self.common: frozenset[int] = frozenset()  # shards both ends carry (the directory's)
        self.open = True
        self.transient = False  # a sender's hand-off connection, closed once done
        self.handoff: tuple[bytes, int] | None = None  # (id, round) at the sender's end


class SimNode:
    def __init__(self, world: World, idx: int, kind: str, shards: frozenset[int] | None) -> None:
        self.world = world
        self.idx = idx
        self.kind = kind
        self.shards = shards  # None: full replication (every envelope)
        self.addr = world.address_of(idx)
        self.online = False
        self.gen = 0  # incremented at each start: callbacks of an earlier life bail out
        self.node_id = b""
        self.conns: dict[int, Conn] = {}
        self.have: dict[bytes, int] = {}  # stored ids -> expiry
        self.index = SortedIndex()  # shard key ‖ expiry ‖ id of every stored envelope
        self.pending: dict[bytes, tuple[Conn, float]] = {}
        self.known: list[int] = []  # address book (indices of nodes heard of)
        self.bans: dict[int, float] = {}
        self.announce_q: dict[Conn, list[bytes]] = {}
        self._flush_at = -1.0
        self.last_flush = -1.0
        self.online_since = 0.0
        self.online_time = 0.0
        # counters (bytes as they would cross the wire)
        self.sent = 0
        self.sent_env = 0  # HAVE, WANT and ENVELOPE frames: the part that grows with traffic
        self.recon = 0
        self.stored_bytes = 0  # bytes newly stored over the run

    # --- lifecycle ---------------------------------------------------------------

    def start(self, keep_store: bool) -> None:
        w = self.world
        self.online = True
        self.gen += 1
        self.online_since = w.sim.now
        self.node_id = w.sim.rng.randbytes(16)
        if not keep_store:
            self.have.clear()
            self.index = SortedIndex()
        self.pending.clear()
        w.sim.at(w.sim.rng.uniform(0, 1), self._maintain, self.gen)

    def stop(self, crash: bool) -> None:
        w = self.world
        self.online = False
        self.online_time += w.sim.now - self.online_since
        for c in list(self.conns.values()):
            if not crash:
                self._bye(c, ByeReason.NORMAL, "shutting down")
            other = c.other
            self._drop(c)
            if other is not None and crash:  # the peer notices when its heartbeat times out
                w.sim.at(w.sim.rng.uniform(5, 35), other.node.lost, other)
        self.announce_q.clear()

    def carried(self) -> Iterable[int]:
        return (ALL,) if self.shards is None else sorted(self.shards)

    def prefixes(self) -> tuple[sh.Prefix, ...]:
        """What its HELLO says it carries: each of its shards, a prefix of depth k."""
        if self.shards is None:
            return sh.EVERYTHING
        return sh.canonical(sh.prefix(s, self.world.cfg.shards_k) for s in self.shards)

    def carries(self, shard: int) -> bool:
        return shard == ALL or self.shards is None or shard in self.shards

    # --- connections -------------------------------------------------------------

    def attach(self, c: Conn) -> None:
        """A connection is open: its Link sends HELLO, with the prefixes this node carries."""
        self.conns[c.peer.idx] = c
        w = self.world
        now = w.sim.unix
        # a dropper answers reconciliation with an empty set
        src = SortedIndex() if self.kind == "dropper" else self.index
        if c.transient and c.outbound:  # a hand-off link, as ``bridge.net.handoff_link``
            local = g.LocalInfo(self.node_id, w.cfg.base_bits, handoff=True)
            link = g.Link(local, now, budgets=w.budgets)
        else:
            link = g.Link(g.LocalInfo(self.node_id, w.cfg.base_bits, False, self.addr,
                                      self.prefixes()), now, source=src, budgets=w.budgets)
        c.link = link
        self.send(c, link.hello(int(now)))

    def send(self, c: Conn, frame: bytes) -> None:
        if not c.open:
            return
        w = self.world
        size = len(frame) + WS_HEADER
        self.sent += size
        kind = frame[0]
        if kind in _PER_ENVELOPE:
            self.sent_env += size
        elif kind in (FrameType.RECONCILE, FrameType.RECONCILE_REPLY):
            self.recon += size
        t = c.ch.arrival(w.sim.now, size, w.sim.rng)
        w.sim.at(t - w.sim.now, _deliver, c.other, frame)

    def _bye(self, c: Conn, reason: ByeReason, text: str) -> None:
        if c.link is not None and c.link.state is not g.State.CLOSED:
            self.send(c, c.link.bye(reason, text))

    def _drop(self, c: Conn) -> None:
        """Forget the connection at this end (as ``Relay.link_closed``)."""
        c.open = False
        if self.conns.get(c.peer.idx) is c:
            del self.conns[c.peer.idx]
        if c.link is not None:
            c.link.forget()
        for eid in [i for i, (cc, _) in self.pending.items() if cc is c]:
            del self.pending[eid]
        self.announce_q.pop(c, None)

    def close(self, c: Conn, reason: ByeReason = ByeReason.NORMAL, text: str = "") -> None:
        if not c.open:
            return
        self._bye(c, reason, text)
        self._drop(c)

    def lost(self, c: Conn) -> None:
        """The peer went away without a word (its socket died)."""
        if c.open and self.online:
            self._drop(c)

    # --- frames in ---------------------------------------------------------------

    def on_frame(self, c: Conn, frame: bytes) -> None:
        link = c.link
        if link is None:
            return
        now = self.world.sim.unix
        try:
            events = link.receive(frame, now, wall=int(now))
        except g.HelloRefused as e:
            self.close(c, e.reason, str(e))
            return
        except RemoteProtocolError as e:
            self.world.stats.violations[type(e).__name__] += 1
            self.bans[c.peer.idx] = self.world.sim.now + self.world.cfg.ban_seconds
            reason = ByeReason.FLOOD if isinstance(e, g.FloodError) else ByeReason.PROTOCOL
            self.close(c, reason, str(e))
            return
        for ev in events:
            if not c.open:
                return
            self._on_event(c, link, ev)

    def _on_event(self, c: Conn, link: g.Link, ev: g.Event) -> None:
        if isinstance(ev, g.Announced):
            self.request(c, link, ev.ids)
        elif isinstance(ev, g.Requested):
            if self.kind != "dropper":
                self.serve(c, link)
            self.world.on_requested(self, c, ev.ids)
        elif isinstance(ev, g.BodyReceived):
            self.on_body(c, ev.envelope_id)
        elif isinstance(ev, g.ReconcileDone):
            have = list(ev.have[:RECONCILE_ANNOUNCE])
            if have and self.kind != "dropper":
                self.queue_announce(c, have)
            self.request(c, link, ev.need)
        elif isinstance(ev, g.Outgoing):
            self.send(c, ev.frame)
        elif isinstance(ev, g.PeerReady):
            self._greet(c, link, ev.hello)
        elif isinstance(ev, g.PeersHeard):
            self.learn(ev.addrs)
        elif isinstance(ev, g.Closed):
            self._drop(c)

    def _greet(self, c: Conn, link: g.Link, hello: Hello) -> None:
        w = self.world
        if c.transient:
            w.on_handoff_ready(self, c)
            return
        if w.cfg.peer_exchange:
            self.send(c, link.peers(w.addresses(self.exchange())))
        if c.outbound and not hello.light and self.kind != "dropper" and link.overlaps():
            self.send(c, link.start_reconcile())

    # --- fetching, storing, serving (bridge.net.relay) ---------------------------

    def request(self, c: Conn, link: g.Link, ids: Iterable[bytes]) -> None:
        w = self.world
        now = w.sim.unix
        asked = len(self.pending)
        bound = asked + len(self.conns) * w.budgets.max_wanted
        if bound > w.request_ids:  # as the relay counts; only summed when it can matter
            asked = max(asked, sum(len(x.link.wanted) for x in self.conns.values()
                                   if x.link is not None))
        link.expire_wanted(now)
        room = min(w.request_ids - asked, link.can_request(now))
        fresh: list[bytes] = []
        have, pending = self.have, self.pending
        for eid in ids:
            if len(fresh) >= room:
                break
            if eid in have:
                continue
            p = pending.get(eid)
            if p is not None and w.sim.now - p[1] < REQUEST_TIMEOUT:
                continue
            fresh.append(eid)
        frames, left = link.request(fresh, now)
        t = w.sim.now
        for eid in fresh[: len(fresh) - len(left)]:
            pending[eid] = (c, t)
        for f in frames:
            self.send(c, f)

    def serve(self, c: Conn, link: g.Link) -> None:
        w = self.world
        now = w.sim.unix
        wants = link.peer_wants
        while link.active and wants:
            chunk = list(islice(wants, SERVE_CHUNK))
            for eid in chunk:
                env = w.envs.get(eid)
                if eid not in self.have or env is None:
                    wants.pop(eid, None)
                    continue
                frame = link.send_body(eid, env.raw, now)
                if frame is not None:
                    self.send(c, frame)

    def on_body(self, c: Conn, eid: bytes) -> None:
        w = self.world
        self.pending.pop(eid, None)
        env = w.envs[eid]
        if env.expiry <= w.sim.unix:
            return  # expired in transit: dropped, no blame
        if self.kind == "dropper":
            self.flood_announce([eid], exclude=c)  # claims it, never serves it
            return
        if eid in self.have:
            return
        # the Link took the body only under this node's prefixes (else ShardError)
        self.store(eid, source=c)

    def store(self, eid: bytes, source: Conn | None) -> None:
        w = self.world
        env = w.envs[eid]
        key = sh.shard_of_tag(env.tag)
        self.have[eid] = env.expiry
        self.index.add(key, env.expiry, eid)
        self.stored_bytes += len(env.raw)
        w.on_stored(self, env)
        for x in self.conns.values():  # waiting WANTs
            if x.link is not None and eid in x.link.peer_wants:
                self.serve(x, x.link)
        for x in self.conns.values():
            if x is source or x.transient:
                continue
            link = x.link
            if link is not None and link.active and link.peer_carries(key):
                self.queue_announce(x, [eid])

    def flood_announce(self, ids: list[bytes], exclude: Conn | None) -> None:
        key = sh.shard_of_tag(self.world.envs[ids[0]].tag)
        for x in self.conns.values():
            if x is exclude or x.transient:
                continue
            if x.link is not None and x.link.active and x.link.peer_carries(key):
                self.queue_announce(x, ids)

    def queue_announce(self, c: Conn, ids: list[bytes]) -> None:
        self.announce_q.setdefault(c, []).extend(ids)
        if self._flush_at < self.world.sim.now:
            w = self.world
            delay = max(0.0, self.last_flush + w.cfg.announce_delay - w.sim.now)
            self._flush_at = w.sim.now + delay
            w.sim.at(delay, self._flush, self.gen)

    def _flush(self, gen: int) -> None:
        if gen != self.gen or not self.online:
            return
        self.last_flush = self.world.sim.now
        q, self.announce_q = self.announce_q, {}
        for c, ids in q.items():
            link = c.link
            if c.open and link is not None and link.active:
                for f in link.announce(ids):
                    self.send(c, f)

    # --- peer exchange -----------------------------------------------------------

    def learn(self, addrs: Iterable[str]) -> None:
        w = self.world
        for a in addrs:
            i = w.addr_idx.get(a)
            if i is None or i == self.idx:
                continue
            if len(self.known) < w.cfg.book_size:
                self.known.append(i)
            else:
                self.known[w.sim.rng.randrange(len(self.known))] = i

    def exchange(self) -> list[int]:
        rng = self.world.sim.rng
        return rng.sample(self.known, min(32, len(self.known)))

    # --- periodic work (bridge.net.node._maintenance) ----------------------------

    def _maintain(self, gen: int) -> None:
        if gen != self.gen or not self.online:
            return
        w = self.world
        rng = w.sim.rng
        w.sim.at(w.cfg.anti_entropy_interval * rng.uniform(0.75, 1.25), self._maintain, gen)
        now, unix = w.sim.now, w.sim.unix
        self.pending = {k: v for k, v in self.pending.items() if now - v[1] < REQUEST_FORGET}
        for c in self.conns.values():
            if c.link is not None:
                c.link.expire_wanted(unix)
        self._purge(int(unix))
        w.discover(self)
        conns = [c for c in self.conns.values() if not c.transient and c.link is not None]
        if w.cfg.peer_exchange and conns and self.known:
            c = rng.choice(conns)
            if c.link is not None and c.link.active:
                self.send(c, c.link.peers(w.addresses(self.exchange())))
        if self.kind == "flooder":
            w.flood(self, conns)
        if self.kind == "dropper":
            return
        # as bridge.net.node: each prefix we carry with a random peer that shares some of it
        free = [c for c in conns if c.link is not None and c.link.active
                and not c.link.reconciling and c.link.overlaps()]
        for mine in self.prefixes():
            choices = [(c, o) for c in free for p in c.link.peer_shards  # type: ignore[union-attr]
                       if (o := sh.overlap(mine, p)) is not None]
            if choices:
                c, o = rng.choice(choices)
                free.remove(c)
                self.send(c, c.link.start_reconcile(unix, o))  # type: ignore[union-attr]

    def _purge(self, unix: int) -> None:
        for key in self.index.pop_expired(unix):
            self.have.pop(key_id(key), None)


def _deliver(c: Conn | None, frame: bytes) -> None:
    if c is not None and c.open and c.node.online:
        c.node.on_frame(c, frame)
