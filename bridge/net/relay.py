"""What the node does with its links' gossip events: fetch, check, store, serve, announce.

An announced id is asked of one peer at a time, and of another only after
``REQUEST_TIMEOUT``: then, at the next maintenance round, of another peer that
announced it (a peer that takes bodies and never serves them holds one up only
that long). A body is checked in cost order (size → header → expiry →
PoW → duplicate) and stored; once the store has made it durable
(``bridge.net.durable``) the subscribers hear of it, WANTs waiting for it are
answered and it is announced — HAVEs at most once per ``announce_delay`` — to every
peer that accepts its PoW and carries its shard (a light peer: watches its prefix). A
light node fetches every body under the prefixes it asked for, keeps those whose tags it
watches (``bridge.net.light``) and announces only its own envelopes.

Shards (docs/sharding.md): a link takes bodies only under the prefixes this node
carries (one outside is a violation, ``gossip.ShardError``), so a relay never stores
a shard it does not carry; what it announces to a peer, and serves, lies under the
peer's prefixes. Its own envelopes (``publish``) it keeps whatever their shard, and
offers them to the peers that carry it.

Bounds: requests in flight are capped node-wide (``MemoryBudget.request_ids``)
and expire; a light peer's WATCH_SHARD costs a reconciliation of its prefix
(``core.gossip_light``); at most ``max_light_peers`` light peers are admitted;
after a reconciliation at most ``RECONCILE_ANNOUNCE`` ids are announced at once (the
peer finds the rest as its own ``need`` in its next round, within its budgets, not ours).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Final

from bridge.core import gossip as g
from bridge.core.checks import MAX_CLOCK_SKEW, check_envelope, check_pow
from bridge.core.envelope import Envelope, parse_envelope
from bridge.core.errors import ExpiredError, RemoteProtocolError
from bridge.core.gossip_wire import MAX_IDS, MAX_PEERS, ByeReason, Hello
from bridge.core.shards import shard_of_tag
from bridge.net.addresses import canonical
from bridge.net.peerlink import PeerConnection

if TYPE_CHECKING:
    from bridge.net.node import Node

log = logging.getLogger(__name__)
Subscriber = Callable[[Envelope], None]
REQUEST_TIMEOUT = 10.0  # a WANT not answered by then may be asked of another peer
REQUEST_FORGET = 60.0  # an unanswered request is forgotten after this
SERVE_CHUNK: Final = 256  # wants looked at per pass while a queue has room
RECONCILE_ANNOUNCE: Final = 4 * MAX_IDS  # ids announced at once after a reconciliation (half
# the have_burst a peer allows us)


class Relay:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.subscribers: list[Subscriber] = []
        self.pending: dict[bytes, tuple[PeerConnection, float]] = {}  # requested ids
        self._flush_handle: asyncio.Handle | None = None
        self._last_flush = float("-inf")  # loop time of the last HAVE flush

    def on_event(self, conn: PeerConnection, ev: g.Event) -> None:
        node = self.node
        if isinstance(ev, g.PeerReady):
            conn.on_room = self.serve
            # this link counts already: it is active since its HELLO
            if ev.hello.light and self._light_peers() > node.config.max_light_peers:
                node.links.refuse(conn, ByeReason.NORMAL, "no room for another light peer")
            elif node.links.admit(conn, ev.hello) and not ev.hello.handoff:
                self._greet(conn, ev.hello)  # a hand-off link: no addresses, no catch-up
        elif isinstance(ev, g.Announced):
            self._request(conn, ev.ids)
        elif isinstance(ev, g.Requested):
            self.serve(conn)
        elif isinstance(ev, g.BodyReceived):
            self._on_body(conn, ev.envelope_id, ev.raw)
        elif isinstance(ev, g.ReconcileDone):
            have = [i for i in ev.have if i not in node.held]
            self._queue_announce(conn, have[:RECONCILE_ANNOUNCE])
            self._request(conn, ev.need)
        elif isinstance(ev, g.PeersHeard):
            if node.config.peer_exchange:
                for a in ev.addrs:
                    node.book.learn(a)
        elif isinstance(ev, g.ShardAsked):  # carriers from the book (none without exchange)
            addrs = []
            if node.config.peer_exchange:
                addrs = [a for a in node.book.book.carriers(ev.prefix, vouched=True)
                         if a != conn.address and a not in node.selves][:MAX_PEERS]
            conn.send(conn.link.shard_peers(ev.prefix, addrs, node.book.carried(addrs)))
        elif isinstance(ev, g.ShardWatched):  # its reconciliation is on its way (Outgoing)
            node.notify_change()
        elif isinstance(ev, g.Outgoing):
            conn.send(ev.frame)
        elif isinstance(ev, g.Closed):
            node.recent_errors.append(f"peer {conn.address} said bye: {ev.reason.name} {ev.text}")

    def serve(self, conn: PeerConnection) -> None:
        """Send the bodies ``conn``'s peer asked for, as far as its queue has room.

        What does not fit stays in ``peer_wants`` and goes when the queue drains
        (``PeerConnection.on_room``); what is still being committed goes once durable.
        """
        link, node = conn.link, self.node
        now = time.monotonic()
        wants = link.peer_wants
        while link.active and wants:
            progressed = False
            for eid in list(islice(wants, SERVE_CHUNK)):  # not a copy of all: this runs often
                if eid in node.held:
                    continue  # served once durable (``stored``); the link keeps the want
                raw = node.store.get(eid)
                progressed = True
                if raw is None:
                    wants.pop(eid, None)
                    continue
                if not conn.room_for(len(raw) + 1):
                    return
                frame = link.send_body(eid, raw, now)
                if frame is not None:
                    conn.send(frame)
            if not progressed:
                return

    def _light_peers(self) -> int:
        return sum(1 for c in self.node.conns if c.link.peer is not None and c.link.peer.light
                   and c.link.active)

    def _greet(self, conn: PeerConnection, hello: Hello) -> None:
        """An admitted peer: exchange addresses, then watch tags or catch up."""
        node = self.node
        cfg = node.config
        if hello.listen and cfg.peer_exchange and not hello.light:
            node.book.learn(hello.listen)
        if cfg.peer_exchange:
            addrs = node.book.exchange(canonical(hello.listen) or "")
            conn.send(conn.link.peers(addrs, node.book.carried(addrs)))
        if cfg.light:
            node.light.ask(conn, time.monotonic())  # a full peer: our prefixes it carries
        elif conn.outbound and not hello.light and conn.link.overlaps():
            # catch up at once after (re)connecting
            conn.send(conn.link.start_reconcile(time.monotonic()))
        node.notify_change()

    # --- fetching ----------------------------------------------------------------

    def _request(self, conn: PeerConnection, ids: tuple[bytes, ...]) -> None:
        now = time.monotonic()
        fresh: list[bytes] = []
        asked = max(len(self.pending), sum(len(c.link.wanted) for c in self.node.conns))
        conn.link.expire_wanted(now)
        room = min(self.node.memory.request_ids - asked, conn.link.can_request(now))
        for eid in ids:
            if len(fresh) >= room:
                break  # the rest are left to anti-entropy
            if eid in self.node.store or eid in self.node.light:  # light: fetched before
                continue
            pend = self.pending.get(eid)
            if pend is not None and now - pend[1] < REQUEST_TIMEOUT:
                continue
            fresh.append(eid)
        frames, _left = conn.link.request(fresh, now)  # beyond budget: left to anti-entropy
        for eid in fresh[: len(fresh) - len(_left)]:
            self.pending[eid] = (conn, now)
        conn.send_all(frames)
        node = self.node
        if node.config.light:  # no anti-entropy: the rest waits in its backlog
            left = (i for i in ids if i not in self.pending and i not in node.store)
            node.light.later(i for i in left if i not in node.light)

    def request(self, conn: PeerConnection, ids: tuple[bytes, ...]) -> None:
        """Ask ``conn`` for these announced ids, within the budgets."""
        self._request(conn, ids)

    def link_closed(self, conn: PeerConnection) -> None:
        """What was asked of ``conn`` may be asked of another peer at once."""
        for eid in [i for i, (c, _) in self.pending.items() if c is conn]:
            del self.pending[eid]
        conn.link.forget()  # now, not when the collector finds the link's cycles
        conn.drop_unread()

    def expire_requests(self, now: float) -> None:
        """Forget old requests, and ask again elsewhere what a peer left unanswered for
        ``REQUEST_TIMEOUT``: of another peer that announced it (a peer that takes bodies
        and never serves them would otherwise hold each one up until the next
        reconciliation happens to find it)."""
        self.pending = {k: v for k, v in self.pending.items() if now - v[1] < REQUEST_FORGET}
        for c in self.node.conns:
            c.link.expire_wanted(now)
        again: dict[PeerConnection, list[bytes]] = {}
        others = [c for c in self.node.conns if c.link.active]
        for eid, (asked, at) in self.pending.items():
            if now - at < REQUEST_TIMEOUT or eid in self.node.store:
                continue
            other = next((c for c in others if c is not asked and eid in c.link.peer_has), None)
            if other is not None:
                again.setdefault(other, []).append(eid)
        for conn, ids in again.items():
            self._request(conn, tuple(ids))

    def _on_body(self, conn: PeerConnection, eid: bytes, raw: bytes) -> None:
        node = self.node
        self.pending.pop(eid, None)
        now = int(time.time())
        try:
            env = check_envelope(raw, now=now, base_bits=node.config.base_bits)
        except ExpiredError:
            if parse_envelope(raw).expiry > now - MAX_CLOCK_SKEW:
                return  # expired in transit or by a slightly slow clock: drop, no blame
            raise
        if eid in node.store:
            return
        if node.config.light and not node.light.fetched(env, eid):
            node.notify_change()
            return  # read, its id remembered, not kept: not watched
        self.accept(env, eid, conn, local=False)

    # --- storing and spreading ---------------------------------------------------

    def accept(
        self, env: Envelope, eid: bytes, source: PeerConnection | None, *, local: bool
    ) -> None:
        if self.node.store.add(env, int(time.time())):
            self.node.held.stored(env, source, local=local)

    def stored(self, env: Envelope, eid: bytes, source: PeerConnection | None, local: bool) -> None:
        """``env`` is durable: tell the subscribers, serve waiting wants, announce it."""
        node = self.node
        for c in node.conns:
            if eid in c.link.peer_wants and c.link.active:
                self.serve(c)
        for cb in list(self.subscribers):
            try:
                cb(env)
            except Exception:
                log.exception("envelope subscriber failed")
        node.notify_change()
        if node.config.light and local:
            node.light.own.add(env, eid)  # offered to each full peer until one took it
        if node.config.light and not local:
            return  # a light node relays nothing for others
        shard = shard_of_tag(env.tag)
        for c in node.conns:
            if c is source or not c.link.active or c.link.peer is None:
                continue
            if not c.link.peer_carries(shard):
                continue  # it would refuse the body
            peer = c.link.peer
            if peer.min_bits > node.config.base_bits and not self._strong_enough(
                env, peer.min_bits
            ):
                continue
            self._queue_announce(c, (eid,))
        node.notify_change()

    def offer(self, conn: PeerConnection, ids: list[bytes]) -> None:
        """Announce to ``conn`` envelopes of ours it may not have heard of
        (``bridge.net.light_own``), those strong enough for the PoW it asks."""
        node, peer = self.node, conn.link.peer
        if peer is not None and peer.min_bits > node.config.base_bits:
            raws = ((i, node.store.get(i)) for i in ids)
            ids = [i for i, raw in raws if raw is not None
                   and self._strong_enough(parse_envelope(raw), peer.min_bits)]
        self._queue_announce(conn, ids)

    def _strong_enough(self, env: Envelope, bits: int) -> bool:
        try:
            check_pow(env, int(time.time()), bits)
        except RemoteProtocolError:
            return False
        return True

    def _queue_announce(self, conn: PeerConnection, ids: tuple[bytes, ...] | list[bytes]) -> None:
        conn.pending_announce.extend(ids)
        if self._flush_handle is None:
            # Batched on the leading edge: after a quiet ``announce_delay`` the HAVE
            # leaves at the end of this loop turn (a message waits no timer), and what
            # comes within ``announce_delay`` of a flush waits for the next one: still at
            # most one HAVE per link per ``announce_delay``.
            loop = asyncio.get_running_loop()
            wait = self._last_flush + self.node.config.announce_delay - loop.time()
            self._flush_handle = (loop.call_later(wait, self._flush) if wait > 0
                                  else loop.call_soon(self._flush))

    def _flush(self) -> None:
        self._flush_handle = None
        self._last_flush = asyncio.get_running_loop().time()
        for c in self.node.conns:
            if c.pending_announce and c.link.active:
                c.send_all(c.link.announce(c.pending_announce))
            c.pending_announce = []
