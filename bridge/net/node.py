"""The P2P node: an asyncio shell around the sans-IO gossip and reconcile cores.

Serves WebSocket peer links on ``/p2p`` of an aiohttp application (exposed as
``node.http_app`` so the direct-delivery API can add its routes), dials
bootstrap and discovered peers with exponential backoff, runs anti-entropy
with one random peer every few seconds, and checks every envelope in cost
order (size → header → expiry → PoW → duplicate) before storing or spreading
it. A peer that sends invalid data is disconnected and banned for a while.

An envelope is acknowledged — ``publish`` returns, subscribers hear of it, it
is announced to peers and its body served — only once the store has made it
durable (at once in RAM; after a group commit in SQLite). The node never peers
with itself: see ``bridge.net.addresses``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bridge.core import gossip as g
from bridge.core.checks import DEFAULT_BASE_BITS, MAX_CLOCK_SKEW, check_envelope, check_pow
from bridge.core.envelope import Envelope, parse_envelope
from bridge.core.errors import BadPeerError, ExpiredError, RemoteProtocolError
from bridge.core.gossip_wire import MAX_FRAME_SIZE, ByeReason, Hello
from bridge.core.peers import parse_peer
from bridge.net.addresses import PeerBook, SelfAddresses, canonical
from bridge.net.dialer import Dialer
from bridge.net.durable import CommitGate
from bridge.net.peerlink import PeerConnection
from bridge.store.index import Store
from bridge.store.memory import MemoryStore
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)
Subscriber = Callable[[Envelope], None]
REQUEST_TIMEOUT = 10.0  # a WANT not answered by then may be asked of another peer


@dataclass
class NodeConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see ``Node.port`` after start)
    advertise: str = ""  # "host:port" told to peers; default host:port
    base_bits: int = DEFAULT_BASE_BITS  # least PoW difficulty accepted
    light: bool = False  # store nothing for others; fetch only watched tags
    bootstrap: list[str] = field(default_factory=list)
    target_peers: int = 8  # dial discovered peers while fewer links than this
    max_peers: int = 64
    peer_exchange: bool = True
    anti_entropy_interval: float = 5.0
    announce_delay: float = 0.01  # batch HAVEs for this long (fewer frames)
    ban_seconds: float = 600.0
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    budgets: g.Budgets = field(default_factory=g.Budgets)
    # Hook for Tor: a factory of the connector outbound links use.
    connector: Callable[[], aiohttp.BaseConnector] | None = None


class Node:
    def __init__(self, config: NodeConfig | None = None, *, store: Store | None = None) -> None:
        self.config = cfg = config or NodeConfig()
        self.store: Store = store if store is not None else MemoryStore()
        self.node_id = os.urandom(16)
        self.http_app = web.Application()
        self.http_app.router.add_get("/p2p", self._handle_inbound)
        self.port = cfg.port
        self.conns: set[PeerConnection] = set()
        self.book = PeerBook()  # addresses heard of (peer exchange) and our own
        self.tags: set[bytes] = set()  # light mode: the tags we fetch
        self.recent_errors: deque[str] = deque(maxlen=20)
        self.bans: dict[str, float] = {}
        self._subscribers: list[Subscriber] = []
        self._pending: dict[bytes, tuple[PeerConnection, float]] = {}  # requested ids
        self._changed = asyncio.Event()  # replaced by a fresh one at every change
        self.tasks = TaskSet("P2P node", on_error=self.recent_errors.append, logger=log)
        self.writers = TaskSet("P2P link writers", logger=log)
        self.held = CommitGate(  # stored, not yet durable
            self.store, self.tasks, self._stored
        )
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self.dialer = Dialer(self)
        self.started = False

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        connector = cfg.connector() if cfg.connector else None
        self._session = aiohttp.ClientSession(connector=connector)
        self._runner = web.AppRunner(self.http_app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        await site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])
        self.selves.configure(cfg.host, self.port, self.advertise)
        self.started = True
        for addr in cfg.bootstrap:
            try:
                self.add_peer(addr)
            except BadPeerError as e:
                self.recent_errors.append(f"bootstrap peer not used: {e}")
        self.tasks.spawn(self._maintenance(), name="maintenance")

    async def stop(self, *, graceful: bool = True) -> None:
        """Close every link (with BYE if ``graceful``; without, as a crash would)."""
        self.started = False
        self.dialer.stop()
        if graceful:
            try:
                await self.held.commit()
            except Exception:
                log.exception("the last envelopes could not be committed")
        for t in self.tasks:
            t.cancel()
        conns = list(self.conns)
        if graceful:
            await asyncio.gather(
                *(
                    c.close(c.link.bye(ByeReason.NORMAL, "shutting down"))
                    for c in conns
                    if c.link.state is not g.State.CLOSED
                ),
                return_exceptions=True,
            )
        for c in conns:
            c.abort()
        self.conns.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await self.tasks.cancel_all()
        await self.writers.cancel_all()

    # --- the service API ---------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every newly accepted envelope; returns the unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def publish(self, raw: bytes) -> Envelope:
        """Local submission: every check, store, spread. Raises the check's error."""
        env = check_envelope(raw, now=int(time.time()), base_bits=self.config.base_bits)
        eid = env.id
        if eid not in self.store:
            self._accept(env, eid, None, local=True)
        await self.store.flush()  # raises if the store cannot write: not acknowledged
        self.held.settle(eid)
        return env

    def iter_stored(self) -> Iterator[Envelope]:
        for raw in self.store.iter_raw():
            yield parse_envelope(raw)

    def watch_tags(self, tags: set[bytes]) -> None:
        """Light mode: fetch envelopes for these tags from full peers (replaces the set)."""
        self.tags = set(tags)
        for c in self.conns:
            if c.link.active and c.link.peer and not c.link.peer.light:
                c.send(c.link.watch(self.tags))

    def peers(self) -> list[dict[str, object]]:
        return [c.info() for c in self.conns if c.dialled not in self.selves]

    @property
    def known(self) -> dict[str, None]:
        """Addresses heard of through peer exchange, canonical, the latest last."""
        return self.book.known

    @property
    def selves(self) -> SelfAddresses:
        return self.book.selves

    def is_self(self, host_port: str) -> bool:
        """Whether ``host_port`` reaches this very node (known, or found by dialling it)."""
        peer = canonical(host_port)
        return peer is not None and peer in self.selves

    def add_peer(self, host_port: str) -> None:
        """Keep a link to ``host_port`` (BadPeerError if malformed); this node's own: nothing."""
        peer = parse_peer(host_port)
        if peer not in self.selves:
            self.dialer.keep(peer)

    def remove_peer(self, host_port: str) -> None:
        peer = canonical(host_port) or host_port
        self.dialer.forget(peer)
        for c in list(self.conns):
            if peer in (c.dialled, c.address):
                self._refuse(c, ByeReason.NORMAL, "removed")

    def health(self) -> dict[str, object]:
        return {
            "stored_envelopes": len(self.store),
            "stored_bytes": self.store.total_bytes,
            "difficulty_bits": self.config.base_bits,
            "storage": getattr(self.store, "kind", "memory"),
            "light": self.config.light,
            "peers": len([c for c in self.conns if c.link.active]),
            "banned": len(self.bans),
            "recent_errors": list(self.recent_errors),
        }

    @property
    def advertise(self) -> str:
        return self.config.advertise or f"{self.config.host}:{self.port}"

    def active_conns(self) -> list[PeerConnection]:
        return [c for c in self.conns if c.link.active]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checking on every change; TimeoutError if not."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- links -------------------------------------------------------------------

    def banned(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(self.bans.get(k, 0) > now for k in keys if k)

    def ban(self, conn: PeerConnection, why: str) -> None:
        until = time.monotonic() + self.config.ban_seconds
        peer = conn.link.peer
        keys = [conn.address]
        if peer is not None:
            keys.append("id:" + peer.node_id.hex())
        if conn.remote and not conn.remote.startswith("127.") and conn.remote != "::1":
            keys.append("ip:" + conn.remote)  # loopback is shared by Tor and tests
        for k in keys:
            if k:
                self.bans[k] = until
        self.recent_errors.append(f"banned {conn.address or conn.remote}: {why}")

    async def _handle_inbound(self, request: web.Request) -> web.StreamResponse:
        remote = request.remote or ""
        if self.banned("ip:" + remote) or len(self.conns) >= self.config.max_peers:
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_SIZE, heartbeat=30.0)
        await ws.prepare(request)
        await self.run_link(
            ws, outbound=False, remote=remote, dialled="", transport=request.transport
        )
        return ws

    def make_link(self) -> g.Link:
        local = g.LocalInfo(self.node_id, self.config.base_bits, self.config.light, self.advertise)
        source = None if self.config.light else self.store.index
        return g.Link(local, time.monotonic(), source=source, budgets=self.config.budgets)

    async def run_link(
        self,
        ws: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
        *,
        outbound: bool,
        remote: str,
        dialled: str,
        transport: asyncio.BaseTransport | None,
    ) -> None:
        """Drive one peer link until it closes."""
        conn = PeerConnection(
            ws,
            self.make_link(),
            outbound=outbound,
            remote=remote,
            dialled=dialled,
            transport=transport,
            tasks=self.writers,
        )
        self.conns.add(conn)
        if transport is not None:  # our own address, as this link's near end
            sockname = transport.get_extra_info("sockname")
            if isinstance(sockname, tuple) and sockname:
                self.selves.note_local_ip(str(sockname[0]))
        try:
            conn.send(conn.link.hello(int(time.time())))
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise RemoteProtocolError(f"unexpected WebSocket message {msg.type.name}")
                for ev in conn.link.receive(msg.data, int(time.time())):
                    self._on_event(conn, ev)
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
                self.recent_errors.append(f"refused {remote}: {e}")
            await conn.close(conn.link.bye(e.reason, str(e)))
        except RemoteProtocolError as e:
            self.ban(conn, f"{type(e).__name__}: {e}")
            reason = ByeReason.FLOOD if isinstance(e, g.FloodError) else ByeReason.PROTOCOL
            bye = conn.link.bye(reason, str(e)) if conn.link.state is not g.State.CLOSED else None
            await conn.close(bye)
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        finally:
            await conn.close()  # what is queued (a BYE) goes out first
            self.conns.discard(conn)
            for eid in [i for i, (c, _) in self._pending.items() if c is conn]:
                del self._pending[eid]
            self._notify()

    def _refuse(self, conn: PeerConnection, reason: ByeReason, text: str) -> None:
        if conn.link.state is g.State.CLOSED:
            return
        conn.send(conn.link.bye(reason, text))  # queued now, before the link's own close
        if self.started:
            self.tasks.spawn(conn.close(), name="close link")
        else:
            conn.abort()

    def _found_self(self, conn: PeerConnection) -> None:
        """The link's HELLO carried our own node id: both of its ends are this node."""
        self.conns.discard(conn)  # never listed nor counted, not even while it closes
        if conn.dialled and self.book.found_self(conn.dialled):  # the dialling end knows it
            log.info("%s is this node's own address; not dialled again", conn.dialled)
        self._notify()

    # --- gossip events -----------------------------------------------------------

    def _on_event(self, conn: PeerConnection, ev: g.Event) -> None:
        link = conn.link
        if isinstance(ev, g.PeerReady):
            self._on_ready(conn, ev.hello)
        elif isinstance(ev, g.Announced):
            self._request(conn, ev.ids)
        elif isinstance(ev, g.Requested):
            for eid in ev.ids:
                if eid in self.held:
                    continue  # served once durable (``_stored``); the link keeps the want
                raw = self.store.get(eid)
                frame = link.send_body(eid, raw) if raw is not None else None
                if frame is None:
                    link.peer_wants.discard(eid)
                else:
                    conn.send(frame)
        elif isinstance(ev, g.BodyReceived):
            self._on_body(conn, ev.envelope_id, ev.raw)
        elif isinstance(ev, g.ReconcileDone):
            self._queue_announce(conn, [i for i in ev.have if i not in self.held])
            self._request(conn, ev.need)
        elif isinstance(ev, g.PeersHeard):
            if self.config.peer_exchange:
                for a in ev.addrs:
                    self.book.learn(a)
        elif isinstance(ev, g.WatchSet):
            ids = [r_id for r_id, tag in self._tagged() if tag in ev.tags and r_id not in self.held]
            self._queue_announce(conn, ids)
        elif isinstance(ev, g.Outgoing):
            conn.send(ev.frame)
        elif isinstance(ev, g.Closed):
            self.recent_errors.append(f"peer {conn.address} said bye: {ev.reason.name} {ev.text}")

    def _tagged(self) -> Iterator[tuple[bytes, bytes]]:
        for raw in self.store.iter_raw():
            env = parse_envelope(raw)
            yield env.id, env.tag

    def _on_ready(self, conn: PeerConnection, hello: Hello) -> None:
        nid = "id:" + hello.node_id.hex()
        if self.banned(nid, hello.listen, conn.dialled):
            self._refuse(conn, ByeReason.BANNED, "banned for a while")
            return
        for other in self.conns:
            if other is not conn and other.link.peer and other.link.peer.node_id == hello.node_id:
                # Both ends decide alike: keep the link dialled by the smaller node id.
                def dialler(c: PeerConnection) -> bytes:
                    return self.node_id if c.outbound else hello.node_id

                loser = conn if dialler(other) < dialler(conn) else other
                self._refuse(loser, ByeReason.DUPLICATE, "already linked")
                if loser is conn:
                    return
        if hello.listen and self.config.peer_exchange and not hello.light:
            self.book.learn(hello.listen)
        if self.config.peer_exchange:
            conn.send(conn.link.peers(self.book.exchange(canonical(hello.listen) or "")))
        if self.config.light:
            if not hello.light and self.tags:
                conn.send(conn.link.watch(self.tags))
        elif conn.outbound and not hello.light:
            conn.send(conn.link.start_reconcile())  # catch up at once after (re)connecting
        self._notify()

    def _request(self, conn: PeerConnection, ids: tuple[bytes, ...]) -> None:
        now = time.monotonic()
        fresh = []
        for eid in ids:
            if eid in self.store:
                continue
            pend = self._pending.get(eid)
            if pend is not None and now - pend[1] < REQUEST_TIMEOUT:
                continue
            fresh.append(eid)
        frames, _left = conn.link.request(fresh, now)  # beyond budget: left to anti-entropy
        for eid in fresh[: len(fresh) - len(_left)]:
            self._pending[eid] = (conn, now)
        conn.send_all(frames)

    def _on_body(self, conn: PeerConnection, eid: bytes, raw: bytes) -> None:
        self._pending.pop(eid, None)
        now = int(time.time())
        try:
            env = check_envelope(raw, now=now, base_bits=self.config.base_bits)
        except ExpiredError:
            if parse_envelope(raw).expiry > now - MAX_CLOCK_SKEW:
                return  # expired in transit or by a slightly slow clock: drop, no blame
            raise
        if eid in self.store:
            return
        if self.config.light and env.tag not in self.tags:
            return
        self._accept(env, eid, conn, local=False)

    def _accept(
        self, env: Envelope, eid: bytes, source: PeerConnection | None, *, local: bool
    ) -> None:
        if self.store.add(env, int(time.time())):
            self.held.stored(env, source, local=local)

    def _stored(
        self, env: Envelope, eid: bytes, source: PeerConnection | None, local: bool
    ) -> None:
        """``env`` is durable: tell the subscribers, serve waiting wants, announce it."""
        for c in self.conns:
            if eid in c.link.peer_wants and c.link.active:
                frame = c.link.send_body(eid, env.raw)
                if frame is not None:
                    c.send(frame)
        for cb in list(self._subscribers):
            try:
                cb(env)
            except Exception:
                log.exception("envelope subscriber failed")
        self._notify()
        if self.config.light and not local:
            return  # a light node relays nothing for others
        for c in self.conns:
            if c is source or not c.link.active or c.link.peer is None:
                continue
            peer = c.link.peer
            if peer.light and (c.link.watch_tags is None or env.tag not in c.link.watch_tags):
                continue
            if peer.min_bits > self.config.base_bits and not self._strong_enough(
                env, peer.min_bits
            ):
                continue
            self._queue_announce(c, (eid,))
        self._notify()

    def _strong_enough(self, env: Envelope, bits: int) -> bool:
        try:
            check_pow(env, int(time.time()), bits)
        except RemoteProtocolError:
            return False
        return True

    def _queue_announce(self, conn: PeerConnection, ids: tuple[bytes, ...] | list[bytes]) -> None:
        conn.pending_announce.extend(ids)
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(self.config.announce_delay, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        for c in self.conns:
            if c.pending_announce and c.link.active:
                c.send_all(c.link.announce(c.pending_announce))
            c.pending_announce = []

    # --- periodic work -----------------------------------------------------------

    async def _maintenance(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.anti_entropy_interval * random.uniform(0.75, 1.25))
            now = time.monotonic()
            self.bans = {k: t for k, t in self.bans.items() if t > now}
            self._pending = {k: v for k, v in self._pending.items() if now - v[1] < 60}
            if self.store.purge(int(time.time())):
                self._notify()
            self.dialer.discover()
            active = self.active_conns()
            if cfg.peer_exchange and active and self.known:
                c = random.choice(active)  # addresses learned since that link's hello
                c.send(c.link.peers(self.book.exchange(c.address)))
            if cfg.light:
                if self.tags:  # light catch-up: ask again; known ids are not re-announced
                    self.watch_tags(self.tags)
                continue
            peers = [
                c
                for c in self.conns
                if c.link.active
                and c.link.peer
                and not c.link.peer.light
                and not c.link.reconciling
            ]
            if peers:
                c = random.choice(peers)
                c.send(c.link.start_reconcile())
