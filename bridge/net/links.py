"""The node's peer links: accept them, drive each until it closes, and ban bad peers.

Every link — accepted on ``/p2p`` here or dialled by ``bridge.net.dialer`` —
runs in ``run_link``, which hands its gossip events to the node's relay. An
inbound connection is first admitted at accept (``admission``: new connections
a second per prefix and per node, the rest reset before anything is read), then
needs a slot (``bridge.net.slots``: caps per host and prefix, eviction of the
least useful link when full); every link must finish HELLO
within ``hello_timeout`` seconds. A peer is admitted at HELLO unless banned; of
two links to the same node, both ends keep the one dialled by the smaller node
id. The addresses a link tells of go to the address book with the link's IP as
their source; a dialled address that answers with a valid HELLO is *tried*. A
peer that breaks the protocol is sent BYE and banned for ``ban_seconds`` by
listen address, node id and (when not loopback) IP. A link whose two ends are
this very node is dropped, and its address is never dialled again (see
``bridge.net.addresses``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from bridge.core import gossip as g
from bridge.core.errors import RemoteProtocolError
from bridge.core.gossip_wire import MAX_FRAME_SIZE, ByeReason, Hello
from bridge.core.slots import Admission
from bridge.net.peerlink import VIOLATOR_GRACE, PeerConnection, Socket
from bridge.net.slots import InboundSlots, Slot

if TYPE_CHECKING:
    from bridge.net.node import Node

log = logging.getLogger(__name__)
_CLOSING = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


class Links:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.conns: set[PeerConnection] = set()
        self.slots = InboundSlots(node)
        self.admission = Admission(node.config.admission, time.monotonic())
        self.bans: dict[str, float] = {}  # "host:port", "id:<hex>" or "ip:<addr>" -> until

    # --- bans --------------------------------------------------------------------

    def banned(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(self.bans.get(k, 0) > now for k in keys if k)

    def ban(self, conn: PeerConnection, why: str) -> None:
        until = time.monotonic() + self.node.config.ban_seconds
        peer = conn.link.peer
        keys = [conn.address]
        if peer is not None:
            keys.append("id:" + peer.node_id.hex())
        if conn.remote and not conn.remote.startswith("127.") and conn.remote != "::1":
            keys.append("ip:" + conn.remote)  # loopback is shared by Tor and tests
        for k in keys:
            if k:
                self.bans[k] = until
        self.node.recent_errors.append(f"banned {conn.address or conn.remote}: {why}")

    def expire_bans(self, now: float) -> None:
        self.bans = {k: t for k, t in self.bans.items() if t > now}

    # --- one link, from accept to close ------------------------------------------

    async def handle_inbound(self, request: web.Request) -> web.StreamResponse:
        remote = request.remote or ""
        slot = None if self.banned("ip:" + remote) else self.slots.take(remote, request.transport)
        if slot is None:
            refused = web.HTTPForbidden()
            refused.force_close()  # one refusal per connection: no keep-alive to try again on
            raise refused
        try:
            ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_SIZE, heartbeat=30.0)
            await ws.prepare(request)
            await self.run_link(ws, outbound=False, remote=remote, dialled="",
                                transport=request.transport, slot=slot)
        finally:
            self.slots.release(slot)
        return ws

    def make_link(self) -> g.Link:
        node = self.node
        cfg = node.config
        local = g.LocalInfo(node.node_id, cfg.base_bits, cfg.light, node.advertise, cfg.shards)
        source = node.light.ids if cfg.light else node.store.index  # light: ids fetched
        return g.Link(local, time.monotonic(), source=source, budgets=node.link_budgets)

    async def run_link(
        self,
        ws: Socket,
        *,
        outbound: bool,
        remote: str,
        dialled: str,
        transport: asyncio.BaseTransport | None,
        slot: Slot | None = None,
    ) -> None:
        """Drive one peer link until it closes; it must finish HELLO within ``hello_timeout``."""
        node = self.node
        loop = asyncio.get_running_loop()
        hello_by = loop.time() + node.config.hello_timeout
        conn = PeerConnection(
            ws,
            self.make_link(),
            outbound=outbound,
            remote=remote,
            dialled=dialled,
            transport=transport,
            tasks=node.writers,
            queue_limit=node.memory.link_queue_bytes,
            budget=node.outbound,
        )
        self.conns.add(conn)
        if slot is not None:
            slot.conn = conn
        if transport is not None:  # our own address, as this link's near end
            sockname = transport.get_extra_info("sockname")
            if isinstance(sockname, tuple) and sockname:
                node.selves.note_local_ip(str(sockname[0]))
        try:
            conn.send(conn.link.hello(int(time.time())))
            while True:
                waiting = conn.link.peer is None
                msg = await ws.receive(max(0.0, hello_by - loop.time()) if waiting else None)
                if msg.type in _CLOSING:
                    break
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RemoteProtocolError(f"unexpected WebSocket message {msg.type.name}")
                await conn.turn()  # fair to other links; paused while our queue is full
                for ev in conn.link.receive(msg.data, time.monotonic(), wall=int(time.time())):
                    self._on_event(conn, ev, slot)
                if waiting and conn.link.peer is not None:
                    self._hello_done(conn, slot)
                if conn.link.state is g.State.CLOSED:
                    break
            exc = ws.exception()  # a broken WebSocket framing is the peer's fault; a reset is not
            if ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG or isinstance(
                exc, aiohttp.WebSocketError
            ):
                raise RemoteProtocolError(f"bad WebSocket framing: {exc or 'frame too big'}")
        except g.HelloRefused as e:
            if e.reason is ByeReason.SELF:
                self._found_self(conn)
            else:
                node.recent_errors.append(f"refused {remote}: {e}")
            await conn.close(conn.link.bye(e.reason, str(e)))
        except RemoteProtocolError as e:
            self.ban(conn, f"{type(e).__name__}: {e}")
            reason = ByeReason.FLOOD if isinstance(e, g.FloodError) else ByeReason.PROTOCOL
            bye = conn.link.bye(reason, str(e)) if conn.link.state is not g.State.CLOSED else None
            await conn.close(bye, grace=VIOLATOR_GRACE, handshake=False)  # read no more
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        finally:
            await conn.close()  # what is queued (a BYE) goes out first
            self.conns.discard(conn)
            node.relay.link_closed(conn)
            node.notify_change()

    def _on_event(self, conn: PeerConnection, ev: g.Event, slot: Slot | None) -> None:
        """Hand ``ev`` to the relay, noting what the address book and eviction need."""
        node = self.node
        if isinstance(ev, g.PeersHeard):  # addresses a stranger tells of, with their source
            if node.config.peer_exchange:
                carried = ev.carried or ((),) * len(ev.addrs)
                for a, shards in zip(ev.addrs, carried, strict=True):
                    node.book.learn(a, conn.remote, shards=shards)
            return
        if isinstance(ev, g.ShardPeersHeard):  # carriers we asked this peer for
            for a, shards in zip(ev.addrs, ev.carried, strict=True):
                node.book.learn(a, conn.remote, shards=shards)
            node.notify_change()  # a hand-off may wait for them (``bridge.net.handoff``)
            return
        if isinstance(ev, g.PeerReady):  # a peer's own address, first-hand
            hello = ev.hello
            if hello.listen and node.config.peer_exchange and not hello.light and not (
                    self.banned("id:" + hello.node_id.hex(), hello.listen)):
                node.book.learn(hello.listen, conn.remote, first_hand=True,
                                shards=hello.shards)
        novel = (slot is not None and isinstance(ev, g.BodyReceived)
                 and ev.envelope_id not in node.store)
        node.relay.on_event(conn, ev)
        if isinstance(ev, g.BodyReceived) and conn.link.handoff:
            node.handoffs.taken(conn)
        if novel and isinstance(ev, g.BodyReceived) and ev.envelope_id in node.store:
            slot.last_novel = time.monotonic()  # type: ignore[union-attr]

    def _hello_done(self, conn: PeerConnection, slot: Slot | None) -> None:
        now = time.monotonic()
        if slot is not None:
            slot.hello_at = now
        if conn.outbound and conn.dialled and conn in self.conns and conn.link.active:
            peer = conn.link.peer
            self.node.book.good(conn.dialled, peer.shards if peer is not None else ())  # tried

    def admit(self, conn: PeerConnection, hello: Hello) -> bool:
        """At HELLO: refuse a banned peer, and the loser of two links to one node."""
        if self.banned("id:" + hello.node_id.hex(), hello.listen, conn.dialled):
            self.refuse(conn, ByeReason.BANNED, "banned for a while")
            return False
        if hello.handoff:  # its own caps; a fresh node id each time: no duplicates
            return self.node.handoffs.admit(conn)
        for other in self.conns:
            if other is not conn and other.link.peer and other.link.peer.node_id == hello.node_id:
                # Both ends decide alike: keep the link dialled by the smaller node id.
                def dialler(c: PeerConnection) -> bytes:
                    return self.node.node_id if c.outbound else hello.node_id

                loser = conn if dialler(other) < dialler(conn) else other
                self.refuse(loser, ByeReason.DUPLICATE, "already linked")
                if loser is conn:
                    return False
        return True

    def refuse(self, conn: PeerConnection, reason: ByeReason, text: str) -> None:
        if conn.link.state is g.State.CLOSED:
            return
        conn.send(conn.link.bye(reason, text))  # queued now, before the link's own close
        if self.node.started:
            self.node.tasks.spawn(conn.close(), name="close link")
        else:
            conn.abort()

    def _found_self(self, conn: PeerConnection) -> None:
        """The link's HELLO carried our own node id: both of its ends are this node."""
        self.conns.discard(conn)  # never listed nor counted, not even while it closes
        if conn.dialled and self.node.book.found_self(conn.dialled):  # the dialling end knows it
            log.debug("%s is this node's own address; not dialled again", conn.dialled)
        self.node.notify_change()
