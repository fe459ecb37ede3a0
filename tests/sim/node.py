"""A simulated node: the real ``bridge.core.gossip.Link`` per peer and shard, driven on
virtual time the way ``bridge.net.relay`` and ``bridge.net.node`` drive it.

What is the real core here: every frame that crosses a simulated connection is
built by ``Link`` (``gossip_wire`` encodes it) and parsed by the peer's ``Link``,
with its transition table, budgets, ``peer_has`` memory and the unrequested-body
rule; every reconciliation is ``Reconciler`` over the store's real ``SortedIndex``.
What this layer does in place of ``bridge.net`` (and says so): it keeps no
asyncio, no sockets and no outbound queue (the channel's bandwidth paces the
bytes); it does not check proof of work or signatures (the envelopes are
synthetic: a real header, random body, nonce 0); and in sharded mode it gives
each common shard of a connection its own ``Link`` (one gossip session per
shard, two bytes of shard number counted on every frame) — the wire protocol
for that is the next step (docs/sharding.md).

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
SHARD_FIELD: Final = 2  # bytes a sharded frame spends on its shard number
_PER_ENVELOPE: Final = frozenset((FrameType.HAVE, FrameType.WANT, FrameType.ENVELOPE))


class Conn:
    """One end of a connection: a channel towards the peer and one Link per shard."""

    __slots__ = ("ch", "handoff", "links", "node", "open", "other", "outbound", "peer",
                 "transient")

    def __init__(self, node: SimNode, peer: SimNode, ch: Channel, outbound: bool) -> None:
        self.node = node
        self.peer = peer
        self.ch = ch
        self.outbound = outbound
        self.other: Conn | None = None
        self.links: dict[int, g.Link] = {}
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
        self.index: dict[int, SortedIndex] = {}
        self.pending: dict[bytes, tuple[Conn, float]] = {}
        self.known: list[int] = []  # address book (indices of nodes heard of)
        self.bans: dict[int, float] = {}
        self.announce_q: dict[tuple[Conn, int], list[bytes]] = {}
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
            self.index = {}
        for s in self.carried():
            self.index.setdefault(s, SortedIndex())
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

    # --- connections -------------------------------------------------------------

    def attach(self, c: Conn, shards: Iterable[int]) -> None:
        """A connection is open: one Link per shard in common, each sends HELLO."""
        self.conns[c.peer.idx] = c
        w = self.world
        now = w.sim.unix
        light = False
        for s in shards:
            src = None if self.kind == "dropper" else self.index.get(s)
            if src is None:
                src = SortedIndex()  # a dropper answers reconciliation with an empty set
            link = g.Link(
                g.LocalInfo(self.node_id, w.cfg.base_bits, light, self.addr),
                now, source=src, budgets=w.budgets,
            )
            c.links[s] = link
            self.send(c, s, link.hello(int(now)))

    def send(self, c: Conn, shard: int, frame: bytes) -> None:
        if not c.open:
            return
        w = self.world
        size = len(frame) + WS_HEADER + (SHARD_FIELD if w.sharded else 0)
        self.sent += size
        kind = frame[0]
        if kind in _PER_ENVELOPE:
            self.sent_env += size
        elif kind in (FrameType.RECONCILE, FrameType.RECONCILE_REPLY):
            self.recon += size
        t = c.ch.arrival(w.sim.now, size, w.sim.rng)
        w.sim.at(t - w.sim.now, _deliver, c.other, shard, frame)

    def _bye(self, c: Conn, reason: ByeReason, text: str) -> None:
        for s, link in c.links.items():
            if link.state is not g.State.CLOSED:
                self.send(c, s, link.bye(reason, text))

    def _drop(self, c: Conn) -> None:
        """Forget the connection at this end (as ``Relay.link_closed``)."""
        c.open = False
        if self.conns.get(c.peer.idx) is c:
            del self.conns[c.peer.idx]
        for link in c.links.values():
            link.forget()
        for eid in [i for i, (cc, _) in self.pending.items() if cc is c]:
            del self.pending[eid]
        for key in [k for k in self.announce_q if k[0] is c]:
            del self.announce_q[key]

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

    def on_frame(self, c: Conn, shard: int, frame: bytes) -> None:
        link = c.links.get(shard)
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
            self._on_event(c, shard, link, ev)

    def _on_event(self, c: Conn, shard: int, link: g.Link, ev: g.Event) -> None:
        if isinstance(ev, g.Announced):
            self.request(c, shard, link, ev.ids)
        elif isinstance(ev, g.Requested):
            if self.kind != "dropper":
                self.serve(c, shard, link)
            self.world.on_requested(self, c, ev.ids)
        elif isinstance(ev, g.BodyReceived):
            self.on_body(c, shard, ev.envelope_id)
        elif isinstance(ev, g.ReconcileDone):
            have = list(ev.have[:RECONCILE_ANNOUNCE])
            if have and self.kind != "dropper":
                self.queue_announce(c, shard, have)
            self.request(c, shard, link, ev.need)
        elif isinstance(ev, g.Outgoing):
            self.send(c, shard, ev.frame)
        elif isinstance(ev, g.PeerReady):
            self._greet(c, shard, link, ev.hello)
        elif isinstance(ev, g.PeersHeard):
            self.learn(ev.addrs)
        elif isinstance(ev, g.Closed):
            self._drop(c)

    def _greet(self, c: Conn, shard: int, link: g.Link, hello: Hello) -> None:
        w = self.world
        if c.transient:
            w.on_handoff_ready(self, c, shard)
            return
        if shard == min(c.links) and w.cfg.peer_exchange:
            self.send(c, shard, link.peers(w.addresses(self.exchange())))
        if c.outbound and not hello.light and self.kind != "dropper":
            self.send(c, shard, link.start_reconcile())

    # --- fetching, storing, serving (bridge.net.relay) ---------------------------

    def request(self, c: Conn, shard: int, link: g.Link, ids: Iterable[bytes]) -> None:
        w = self.world
        now = w.sim.unix
        asked = len(self.pending)
        per_conn = 1 if self.shards is None else len(self.shards)
        bound = asked + len(self.conns) * per_conn * w.budgets.max_wanted
        if bound > w.request_ids:  # as the relay counts; only summed when it can matter
            asked = max(asked, sum(len(lk.wanted) for x in self.conns.values()
                                   for lk in x.links.values()))
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
            self.send(c, shard, f)

    def serve(self, c: Conn, shard: int, link: g.Link) -> None:
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
                    self.send(c, shard, frame)

    def on_body(self, c: Conn, shard: int, eid: bytes) -> None:
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
        if shard != ALL and shard != env.shard:
            w.stats.violations["wrong shard"] += 1
            self.close(c, ByeReason.PROTOCOL, "envelope outside the link's shard")
            return
        if shard == ALL or shard in self.index:
            self.store(eid, source=c)
        else:
            w.stats.relay_refused += 1  # a relay never stores a shard it does not carry

    def store(self, eid: bytes, source: Conn | None) -> None:
        w = self.world
        env = w.envs[eid]
        key = ALL if self.shards is None else env.shard
        self.have[eid] = env.expiry
        self.index[key].add(0, env.expiry, eid)  # one index per shard: one shard key in it
        self.stored_bytes += len(env.raw)
        w.on_stored(self, env)
        for x in self.conns.values():  # waiting WANTs
            link = x.links.get(key)
            if link is not None and eid in link.peer_wants:
                self.serve(x, key, link)
        for x in self.conns.values():
            if x is source or x.transient:
                continue
            link = x.links.get(key)
            if link is not None and link.active and link.peer is not None:
                self.queue_announce(x, key, [eid])

    def flood_announce(self, ids: list[bytes], exclude: Conn | None) -> None:
        for x in self.conns.values():
            if x is exclude or x.transient:
                continue
            for s, link in x.links.items():
                if link.active and (s == ALL or s == self.world.envs[ids[0]].shard):
                    self.queue_announce(x, s, ids)

    def queue_announce(self, c: Conn, shard: int, ids: list[bytes]) -> None:
        self.announce_q.setdefault((c, shard), []).extend(ids)
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
        for (c, s), ids in q.items():
            link = c.links.get(s)
            if c.open and link is not None and link.active:
                for f in link.announce(ids):
                    self.send(c, s, f)

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
            for link in c.links.values():
                link.expire_wanted(unix)
        self._purge(int(unix))
        w.discover(self)
        conns = [c for c in self.conns.values() if not c.transient and c.links]
        if w.cfg.peer_exchange and conns and self.known:
            c = rng.choice(conns)
            s = min(c.links)
            if c.links[s].active:
                self.send(c, s, c.links[s].peers(w.addresses(self.exchange())))
        if self.kind == "flooder":
            w.flood(self, conns)
        if self.kind == "dropper":
            return
        for s in self.carried():
            peers = [
                c for c in conns
                if s in c.links and c.links[s].active and c.links[s].peer is not None
                and not c.links[s].peer.light and not c.links[s].reconciling  # type: ignore[union-attr]
            ]
            if peers:
                c = rng.choice(peers)
                self.send(c, s, c.links[s].start_reconcile())

    def _purge(self, unix: int) -> None:
        for idx in self.index.values():
            for key in idx.pop_expired(unix):
                self.have.pop(key_id(key), None)


def _deliver(c: Conn | None, shard: int, frame: bytes) -> None:
    if c is not None and c.open and c.node.online:
        c.node.on_frame(c, shard, frame)
