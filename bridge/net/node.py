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

The node owns its parts: ``links`` (accepting and driving links, duplicates,
bans; ``bridge.net.links``), ``relay`` (what each link's gossip events do to
the store and the other links; ``bridge.net.relay``), ``dialer`` (outbound
links; ``bridge.net.dialer``) and ``held`` (the group commit;
``bridge.net.durable``). This module holds the lifecycle, the service API and
the periodic work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from bridge.core import gossip as g
from bridge.core.checks import DEFAULT_BASE_BITS, check_envelope
from bridge.core.envelope import Envelope, parse_envelope
from bridge.core.errors import BadPeerError
from bridge.core.gossip_wire import ByeReason
from bridge.core.peers import parse_peer
from bridge.core.shards import EVERYTHING, Prefix, overlap
from bridge.core.shards import canonical as canonical_shards
from bridge.core.slots import AdmissionLimits
from bridge.net.addresses import PeerBook, SelfAddresses, canonical
from bridge.net.dialer import Dialer
from bridge.net.durable import CommitGate
from bridge.net.handoff import Handoffs, HandoffSettings
from bridge.net.light import Keep, Keys, LightWatch
from bridge.net.links import Links
from bridge.net.memory import apply_budget, give_back, usage
from bridge.net.peerlink import PeerConnection
from bridge.net.relay import Relay, Subscriber
from bridge.net.slots import AdmittingListener
from bridge.store.index import Store
from bridge.store.memory import MemoryStore
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)
DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024


@dataclass
class NodeConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (see ``Node.port`` after start)
    advertise: str = ""  # "host:port" told to peers; default host:port
    base_bits: int = DEFAULT_BASE_BITS  # least PoW difficulty accepted
    light: bool = False  # store nothing for others; fetch shard prefixes (``bridge.net.light``)
    light_depth: int = 0  # a light node asks at least this deep (0: each full peer's depth)
    light_ids: str = ""  # a light node's file of the ids it fetched ("": RAM only)
    # the shard prefixes this node carries (canonical: ``shards.canonical``); everything
    # by default. Bodies outside them are refused; see docs/sharding.md
    shards: tuple[Prefix, ...] = EVERYTHING
    bootstrap: list[str] = field(default_factory=list)
    target_peers: int = 8  # dial discovered peers while fewer outbound links than this
    max_peers: int = 64  # inbound links: at most max_peers - target_peers
    max_inbound_per_host: int = 4  # an IPv4 address or an IPv6 /64
    max_inbound_per_prefix: int = 8  # an IPv4 /24 or an IPv6 /48
    hello_timeout: float = 10.0  # a link that has not finished HELLO by then is closed
    # new inbound connections a second per prefix and node-wide (``bridge.core.slots``)
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    # dial private, link-local and loopback addresses strangers announce? None: only
    # in the scopes this node binds, advertises or was given peers in (see PeerBook)
    dial_private: bool | None = None
    peer_exchange: bool = True
    anti_entropy_interval: float = 5.0
    reconcile_timeout: float = 60.0  # no reply to our reconciliation this long: not asked again
    announce_delay: float = 0.0  # least time between HAVEs on a link (0: one per loop turn)
    ban_seconds: float = 600.0
    backoff_min: float = 1.0
    backoff_max: float = 60.0
    budgets: g.Budgets = field(default_factory=g.Budgets)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)  # ``bridge.net.handoff``
    # What peers can make this node hold, in bytes (see ``bridge.net.memory``).
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    max_light_peers: int = 16  # light peers, each a reconciliation per prefix a minute
    # Hook for Tor: a factory of the connector outbound links use.
    connector: Callable[[], aiohttp.BaseConnector] | None = None


class Node:
    def __init__(self, config: NodeConfig | None = None, *, store: Store | None = None) -> None:
        self.config = cfg = config or NodeConfig()
        self.store: Store = store if store is not None else MemoryStore()
        self.node_id = os.urandom(16)
        self.memory, self.link_budgets, self.outbound = apply_budget(cfg, self.store)
        self.port = cfg.port
        self.book = PeerBook()  # addresses heard of (peer exchange) and our own
        self.recent_errors: deque[str] = deque(maxlen=20)
        self._changed = asyncio.Event()  # replaced by a fresh one at every change
        self.tasks = TaskSet("P2P node", on_error=self.recent_errors.append, logger=log)
        self.writers = TaskSet("P2P link writers", logger=log)
        self.links = Links(self)
        self.relay = Relay(self)
        self.light = LightWatch(self)  # light mode: the prefixes watched, the ids fetched
        self.held = CommitGate(  # stored, not yet durable
            self.store, self.tasks, self.relay.stored
        )
        self.http_app = web.Application()
        self.http_app.router.add_get("/p2p", self.links.handle_inbound)
        self._runner: web.AppRunner | None = None
        self._listener: AdmittingListener | None = None
        self._session: aiohttp.ClientSession | None = None
        self.dialer = Dialer(self)
        self.handoffs = Handoffs(self)  # own envelopes to shards not carried here
        self.started = False

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        connector = cfg.connector() if cfg.connector else None
        self._session = aiohttp.ClientSession(connector=connector)
        # No access log: it would record every peer's IP address and request time.
        self._runner = web.AppRunner(self.http_app, handle_signals=False, access_log=None)
        await self._runner.setup()
        handler = self._runner.server
        assert handler is not None
        # Our own listener, not a TCPSite: it admits or resets each connection at
        # accept, before asyncio or aiohttp spend anything on it (``bridge.net.slots``).
        self._listener = AdmittingListener(self.links.admission, handler)
        self.port = await self._listener.start(cfg.host, cfg.port)
        self.selves.configure(cfg.host, self.port, self.advertise)
        self.book.dial_private = cfg.dial_private
        self.book.live_in(self.advertise.rpartition(":")[0])
        if cfg.connector is None:  # not the loopback Tor forwards to: Tor reaches none
            self.book.live_in(cfg.host)
        self.started = True
        if cfg.light:
            self.light.load()
        for addr in cfg.bootstrap:
            try:
                self.add_peer(addr)
            except BadPeerError as e:
                self.recent_errors.append(f"bootstrap peer not used: {e}")
        self.tasks.spawn(self._maintenance(), name="maintenance")
        self.handoffs.resume()

    async def stop(self, *, graceful: bool = True) -> None:
        """Close every link (with BYE if ``graceful``; without, as a crash would)."""
        self.started = False
        self.dialer.stop()
        if graceful:
            try:
                await self.held.commit()
            except Exception:
                log.exception("the last envelopes could not be committed")
            if self.config.light:
                try:
                    await self.light.save()
                except OSError:
                    log.exception("the light node's ids could not be saved")
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
        if self._listener is not None:
            self._listener.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        await self.tasks.cancel_all()
        await self.writers.cancel_all()

    # --- the service API ---------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback`` with every newly accepted envelope; returns the unsubscribe."""
        subscribers = self.relay.subscribers
        subscribers.append(callback)
        return lambda: subscribers.remove(callback)

    async def publish(self, raw: bytes) -> Envelope:
        """Local submission: every check, store, spread. Raises the check's error."""
        env = check_envelope(raw, now=int(time.time()), base_bits=self.config.base_bits)
        eid = env.id
        if eid not in self.store:
            self.relay.accept(env, eid, None, local=True)
        await self.store.flush()  # raises if the store cannot write: not acknowledged
        self.held.settle(eid)
        self.handoffs.sent(env)
        return env

    def iter_stored(self) -> Iterator[Envelope]:
        for raw in self.store.iter_raw():
            yield parse_envelope(raw)

    def stored_with_tags(self, tags: Iterable[bytes]) -> list[Envelope]:
        """What the store holds under these tags (its tag index: no scan)."""
        raws = (self.store.get(eid) for eid in self.store.tags.ids(tags))
        return [parse_envelope(raw) for raw in raws if raw is not None]

    def watch_shards(self, keys: Keys, keep: Keep) -> None:
        """Light mode: ask full peers for the prefixes of these shard keys (never for a
        tag), and keep only the envelopes whose tag ``keep`` accepts (replaces both)."""
        self.light.set(keys, keep)

    def peers(self) -> list[dict[str, object]]:
        return [c.info() for c in self.conns if c.dialled not in self.selves]

    def find_carriers(self, prefix: Prefix, fanout: int = 3) -> int:
        """Ask up to ``fanout`` version-2 peers which nodes carry ``prefix``; their answers
        go to the address book (``book.book.carriers``). How many were asked."""
        able = [c for c in self.active_conns()
                if c.link.peer is not None and c.link.peer.version >= 2 and not c.link.peer.light]
        now = time.monotonic()
        for c in random.sample(able, min(fanout, len(able))):
            c.send(c.link.find_shard(prefix, now))
        return min(fanout, len(able))

    def carry(self, prefixes: tuple[Prefix, ...]) -> None:
        """Carry ``prefixes`` from now on (``bridge.net.carrying``): every link says
        goodbye and is made again, so each peer hears the new HELLO."""
        prefixes = canonical_shards(prefixes)
        if prefixes == self.config.shards:
            return
        self.config.shards = prefixes
        for c in list(self.conns):
            if c.link.state is not g.State.CLOSED:
                self.tasks.spawn(c.close(c.link.bye(ByeReason.NORMAL, "carrying other shards")),
                                 name="re-link")
        self.notify_change()

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
            self.book.live_in(peer.rpartition(":")[0])
            self.dialer.keep(peer)

    def remove_peer(self, host_port: str) -> None:
        peer = canonical(host_port) or host_port
        self.dialer.forget(peer)
        for c in list(self.conns):
            if peer in (c.dialled, c.address):
                self.links.refuse(c, ByeReason.NORMAL, "removed")

    def health(self) -> dict[str, object]:
        return {
            "stored_envelopes": len(self.store),
            "stored_bytes": self.store.total_bytes,
            "difficulty_bits": self.config.base_bits,
            "storage": getattr(self.store, "kind", "memory"),
            "light": self.config.light,
            **({"light_watch": self.light.health()} if self.config.light else {}),
            "shards": [str(p) for p in self.config.shards],
            "peers": len([c for c in self.conns if c.link.active]),
            "banned": len(self.bans),
            "memory": usage(self),
            "recent_errors": list(self.recent_errors),
        }

    @property
    def advertise(self) -> str:
        return self.config.advertise or f"{self.config.host}:{self.port}"

    def active_conns(self) -> list[PeerConnection]:
        """The links that are up, but hand-off links (``bridge.net.handoff``)."""
        return [c for c in self.conns if c.link.active and not c.link.handoff]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Wait until ``predicate()`` holds, re-checking on every change; TimeoutError if not."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def notify_change(self) -> None:
        """Wake every ``wait_for``: what it waits on may hold now."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # --- links (``bridge.net.links``) ---------------------------------------------

    @property
    def conns(self) -> set[PeerConnection]:
        return self.links.conns

    @property
    def bans(self) -> dict[str, float]:
        return self.links.bans

    # --- periodic work -----------------------------------------------------------

    async def _maintenance(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.anti_entropy_interval * random.uniform(0.75, 1.25))
            now = time.monotonic()
            self.links.expire_bans(now)
            self.relay.expire_requests(now)
            give_back()
            if self.store.purge(int(time.time())):
                self.notify_change()
            self.dialer.discover()
            active = self.active_conns()
            if cfg.peer_exchange and active and self.known:
                c = random.choice(active)  # addresses learned since that link's hello
                addrs = self.book.exchange(c.address)
                c.send(c.link.peers(addrs, self.book.carried(addrs)))
            if cfg.light:  # catch-up: each full peer reconciles our prefixes again
                self.light.refresh(now)
                continue
            for c in self.conns:
                if c.link.abandon_stalled(now, cfg.reconcile_timeout):
                    log.debug("a peer ignored our reconciliation; it is not asked again")
            self._reconcile_round(now)

    def _reconcile_round(self, now: float) -> None:
        """Each prefix we carry is reconciled with one random peer that carries some of it
        (over the part both carry), one session per link at a time."""
        free = [c for c in self.conns
                if c.link.active and not c.link.reconciling and not c.link.reconcile_ignored
                and c.link.overlaps()]
        for mine in self.config.shards:
            choices = [(c, o) for c in free for p in c.link.peer_shards
                       if (o := overlap(mine, p)) is not None]
            if choices:
                c, o = random.choice(choices)
                free.remove(c)
                c.send(c.link.start_reconcile(now, o))
