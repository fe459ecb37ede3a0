"""The simulated network: nodes, connections, users, traffic, churn, hostile nodes, and
what is measured.

Users live on honest nodes (one user per node). A message goes from a random
online user to another user; it is *delivered* when the recipient's node first
stores it. In full replication every node stores every envelope; in sharded
mode (``shards_k`` > 0) an envelope belongs to shard ``tag >> (128 − k)``, a
user's tags keep its shard's prefix, a node carries its own user's shard (and
``carry − 1`` more), links join nodes that share a shard, and a sender whose
node does not carry the recipient's shard hands the envelope to carriers of it
(found by a lookup the simulator models: a directory of online carriers, charged
the latency and bytes of a Kademlia-style lookup), then confirms with a fresh
carrier that it has spread, handing it over again if not.

Churn: nodes leave at ``churn`` per hour (half crash, half say BYE); a share
leave for good and a newcomer joins in their place; the rest come back after an
exponential downtime, half with their store (SQLite), half empty (RAM). When
sending stops churn stops, and every node still away comes back within five
minutes, so "delivered" means "delivered within the lifetime to a recipient
who came back"; recipients gone for good are not counted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bridge.core import gossip as g
from bridge.core.budget import MemoryBudget
from bridge.core.crypto import AEAD_TAG_SIZE
from bridge.core.envelope import Kind, assemble, envelope_id, signed_header
from tests.sim.engine import Channel, Sim
from tests.sim.node import ALL, WS_HEADER, Conn, SimNode


@dataclass
class Config:
    nodes: int = 100
    seed: int = 1
    shards_k: int = 0  # 0: full replication; else 2**k shards
    carry: int = 1  # shards a node carries (sharded mode)
    warmup: float = 60.0  # seconds before the first message (links form)
    minutes: float = 20.0  # sending window
    drain: float = 10.0  # minutes after sending stops
    rate: float = 3.0  # messages per user per hour
    ttl: int = 2 * 86400
    bucket: int = 1024  # padded plaintext size (envelope.md §4)
    churn: float = 0.10  # share of nodes leaving per hour
    permanent: float = 0.2  # share of leaves that are for good (a newcomer joins instead)
    keep_store: float = 0.5  # share of returns that keep their store
    downtime: float = 600.0  # mean seconds away
    hostile: float = 0.05  # share of nodes that are hostile: half droppers, half flooders
    flood_rate: float = 0.02  # spam envelopes per flooder per second
    junk_ids: int = 32  # ids a flooder announces and never serves, per link and round
    target_peers: int = 8
    max_inbound: int = 56
    latency: tuple[float, float] = (0.01, 0.15)  # one-way, seconds, uniform
    bandwidth: tuple[float, float] = (0.5e6, 5e6)  # bytes per second per link, uniform
    loss: float = 0.01  # frames held for a retransmission
    anti_entropy_interval: float = 5.0
    announce_delay: float = 0.01
    base_bits: int = 18
    ban_seconds: float = 600.0
    peer_exchange: bool = True
    book_size: int = 256
    handoff_copies: int = 2
    handoff_rounds: int = 6

    @property
    def sharded(self) -> bool:
        return self.shards_k > 0


@dataclass(slots=True)
class Env:
    raw: bytes
    tag: bytes
    shard: int
    expiry: int
    sent_at: float
    recipient: int  # node index, -1 for spam
    sender: int
    online: bool = True  # the recipient's node was up when it was sent


@dataclass
class Stats:
    violations: Counter[str] = field(default_factory=Counter)
    lookups: int = 0
    lookup_bytes: int = 0
    handoffs: int = 0
    handoff_rounds: int = 0
    spam: int = 0
    messages: int = 0


@dataclass
class Result:
    nodes: int
    mode: str
    messages: int
    eligible: int
    delivered: int
    p50: float  # latency to recipients whose node was up when the message was sent
    p99: float
    p99_all: float  # every recipient, including those away (their downtime counts)
    sent_per_day: float  # bytes per honest node per day of online time, at the simulated rate
    sent_env_per_day: float  # the part of it that grows with envelopes (HAVE, WANT, bodies)
    stored_per_day: float
    recon_per_day: float
    stored_end: float  # bytes held per honest online node at the end
    wall: float
    events: int
    violations: dict[str, int]
    spam: int
    rate: float
    shard_nodes: float  # nodes per shard (all nodes in full replication)
    env_size: int
    cfg: Config
    flooders: float = 0.0  # share of the nodes that flood

    @property
    def ratio(self) -> float:
        return self.delivered / self.eligible if self.eligible else 1.0


class World:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.sharded = cfg.sharded
        self.sim = Sim(cfg.seed)
        mem = MemoryBudget(512 * 1024 * 1024, cfg.target_peers + cfg.max_inbound)
        self.budgets = dataclasses.replace(
            g.Budgets(), max_wanted=min(2048, mem.link_request_ids),
            peer_has_ids=min(g.PEER_HAS_MEMORY, mem.peer_has_ids),
        )
        self.request_ids = mem.request_ids
        self.nodes: list[SimNode] = []
        self.addr_idx: dict[str, int] = {}
        self.user_shard: list[int] = []
        self.envs: dict[bytes, Env] = {}
        self.delivered: dict[bytes, float] = {}
        self.gone: set[int] = set()
        self.online: set[int] = set()
        self.carriers: dict[int, set[int]] = {}
        self.round_wanted: dict[tuple[bytes, int], bool] = {}
        self.stats = Stats()
        self.send_end = cfg.warmup + cfg.minutes * 60
        self.end = self.send_end + cfg.drain * 60
        self.lookup_hops = max(1, math.ceil(math.log(max(2, cfg.nodes), 16)))

    # --- nodes -------------------------------------------------------------------

    @staticmethod
    def address_of(idx: int) -> str:
        return f"10.{(idx >> 16) & 255}.{(idx >> 8) & 255}.{idx & 255}:45070"

    def addresses(self, idxs: list[int]) -> list[str]:
        return [self.nodes[i].addr for i in idxs]

    def new_node(self, kind: str) -> SimNode:
        cfg, rng = self.cfg, self.sim.rng
        idx = len(self.nodes)
        shard = rng.randrange(1 << cfg.shards_k) if self.sharded else ALL
        self.user_shard.append(shard)
        shards: frozenset[int] | None = None
        if self.sharded:
            want = min(cfg.carry, 1 << cfg.shards_k)
            picked = {shard}
            while len(picked) < want:
                picked.add(rng.randrange(1 << cfg.shards_k))
            shards = frozenset(picked)
        node = SimNode(self, idx, kind, shards)
        self.nodes.append(node)
        self.addr_idx[node.addr] = idx
        return node

    def bring_up(self, node: SimNode, keep_store: bool) -> None:
        node.start(keep_store)
        self.online.add(node.idx)
        for s in node.carried():
            self.carriers.setdefault(s, set()).add(node.idx)
        if not node.known:
            node.known = self._bootstrap(node, 4)

    def take_down(self, node: SimNode, crash: bool) -> None:
        node.stop(crash)
        self.online.discard(node.idx)
        for s in node.carried():
            self.carriers[s].discard(node.idx)

    def _bootstrap(self, node: SimNode, n: int) -> list[int]:
        pool = [i for i in sorted(self.online) if i != node.idx]
        return self.sim.rng.sample(pool, min(n, len(pool)))

    # --- connections -------------------------------------------------------------

    def discover(self, node: SimNode) -> None:
        """Dial while the node has fewer outbound links than it wants (per shard if sharded)."""
        cfg, rng = self.cfg, self.sim.rng
        conns = [c for c in node.conns.values() if not c.transient]
        if not self.sharded:
            out = sum(1 for c in conns if c.outbound)
            if out >= cfg.target_peers:
                return
            if not node.known:
                node.known = self._bootstrap(node, 4)
            for _ in range(min(2, cfg.target_peers - out)):
                if node.known:
                    self.dial(node, self.nodes[rng.choice(node.known)], None)
            return
        for s in node.carried():
            have = sum(1 for c in conns if s in c.common)
            if have >= cfg.target_peers:
                continue
            for peer in self.lookup(node, s, min(2, cfg.target_peers - have)):
                self.dial(node, peer, None)

    def lookup(self, node: SimNode, shard: int, n: int) -> list[SimNode]:
        """Carriers of ``shard``: a directory sample, charged as a Kademlia lookup would be."""
        self.stats.lookups += 1
        cost = self.lookup_hops * 3 * 2 * (350 + WS_HEADER)  # hops x alpha x (ask + answer)
        self.stats.lookup_bytes += cost
        node.sent += cost
        pool = [i for i in sorted(self.carriers.get(shard, ())) if i != node.idx
                and i not in node.conns]
        picked = self.sim.rng.sample(pool, min(n, len(pool)))
        return [self.nodes[i] for i in picked]

    def dial(self, a: SimNode, b: SimNode, transient: tuple[bytes, int] | None) -> None:
        cfg, rng = self.cfg, self.sim.rng
        if b.idx == a.idx or b.idx in a.conns or not b.online:
            return
        if a.bans.get(b.idx, 0) > self.sim.now or b.bans.get(a.idx, 0) > self.sim.now:
            return
        inbound = sum(1 for c in b.conns.values() if not c.outbound)
        if inbound >= cfg.max_inbound:
            return
        common = frozenset([ALL])
        if self.sharded:
            assert a.shards is not None and b.shards is not None
            common = a.shards & b.shards
            if not common and transient is None:
                return
        lat = rng.uniform(*cfg.latency)
        ab = Channel(lat, rng.uniform(*cfg.bandwidth), cfg.loss)
        ba = Channel(lat, rng.uniform(*cfg.bandwidth), cfg.loss)
        ca, cb = Conn(a, b, ab, True), Conn(b, a, ba, False)
        ca.other, cb.other = cb, ca
        ca.common = cb.common = common
        if transient is not None:
            ca.transient = cb.transient = True
            ca.handoff = transient
        a.conns[b.idx] = ca  # reserved while the socket and WebSocket handshakes run
        b.conns[a.idx] = cb
        # TCP + TLS-less WebSocket upgrade: 1.5 round trips, ~500 bytes each way
        a.sent += 500
        b.sent += 300
        self.sim.at(3 * lat, self._open, ca, cb, a.gen, b.gen)

    def _open(self, ca: Conn, cb: Conn, ga: int, gb: int) -> None:
        a, b = ca.node, cb.node
        if a.gen != ga or b.gen != gb or not (a.online and b.online) or not (ca.open and cb.open):
            for c in (ca, cb):
                if c.node.conns.get(c.peer.idx) is c:
                    del c.node.conns[c.peer.idx]
                c.open = False
            return
        a.attach(ca)
        b.attach(cb)

    # --- users and traffic -------------------------------------------------------

    def make_env(self, tag_shard: int, sender: int, recipient: int) -> Env:
        rng, cfg = self.sim.rng, self.cfg
        tag = rng.randbytes(16)
        if self.sharded:
            k = cfg.shards_k
            v = int.from_bytes(tag, "big") & ((1 << (128 - k)) - 1)
            tag = (v | (tag_shard << (128 - k))).to_bytes(16, "big")
        expiry = int(self.sim.unix) + cfg.ttl
        raw = assemble(signed_header(Kind.DIRECT, tag, expiry), rng.randbytes(32),
                       rng.randbytes(cfg.bucket + AEAD_TAG_SIZE))
        shard = tag_shard if self.sharded else ALL
        env = Env(raw, tag, shard, expiry, self.sim.now, recipient, sender,
                  recipient >= 0 and self.nodes[recipient].online)
        self.envs[envelope_id(raw)] = env
        return env

    def _next_message(self) -> None:
        sim, cfg = self.sim, self.cfg
        if sim.now >= self.send_end:
            return
        s = self._pick(lambda n: n.online)
        r = self._pick(lambda n: n.idx not in self.gone and n.idx != s)
        if s >= 0 and r >= 0:
            self.send(self.nodes[s], r)
        total = cfg.rate / 3600 * max(1, round(len(self.online) * (1 - cfg.hostile)))
        sim.at(sim.rng.expovariate(total), self._next_message)

    def _pick(self, ok: Callable[[SimNode], bool]) -> int:
        """A random honest node for which ``ok`` holds (by rejection), or -1."""
        nodes, rng = self.nodes, self.sim.rng
        for _ in range(1000):
            n = nodes[rng.randrange(len(nodes))]
            if n.kind == "honest" and ok(n):
                return n.idx
        return -1

    def send(self, node: SimNode, recipient: int) -> None:
        env = self.make_env(self.user_shard[recipient], node.idx, recipient)
        eid = envelope_id(env.raw)
        self.stats.messages += 1
        if node.carries(env.shard):
            node.store(eid, None)
        else:
            node.have[eid] = env.expiry  # the outbox: served to carriers, never reconciled
            self.stats.handoffs += 1
            self._handoff(node, eid, 0, node.gen)

    # --- hand-off to the carriers of another shard --------------------------------

    def _handoff(self, node: SimNode, eid: bytes, rnd: int, gen: int) -> None:
        if node.gen != gen or not node.online:
            return  # the outbox would retry after a restart; not modelled
        self.stats.handoff_rounds += 1
        env = self.envs[eid]
        copies = self.cfg.handoff_copies if rnd == 0 else 1
        delay = self.lookup_hops * 2 * 0.08
        for peer in self.lookup(node, env.shard, copies):
            self.sim.at(delay, self.dial, node, peer, (eid, rnd))
        self.round_wanted[(eid, rnd)] = False
        self.sim.at(delay + 15.0, self._handoff_check, node, eid, rnd, gen)

    def _handoff_check(self, node: SimNode, eid: bytes, rnd: int, gen: int) -> None:
        for c in [c for c in node.conns.values() if c.handoff is not None and c.handoff[0] == eid]:
            node.close(c)
        wanted = self.round_wanted.pop((eid, rnd), False)
        # Round 0 hands over; every later round asks one fresh carrier, whose WANT
        # says the envelope had not reached it, so it goes round again.
        if (rnd == 0 or wanted) and rnd + 1 < self.cfg.handoff_rounds:
            self._handoff(node, eid, rnd + 1, gen)

    def on_handoff_ready(self, node: SimNode, c: Conn) -> None:
        info = c.handoff
        if info is None or c.link is None:
            return  # the carrier's end: it waits for the announcement
        for f in c.link.announce([info[0]]):
            node.send(c, f)

    def on_requested(self, node: SimNode, c: Conn, ids: tuple[bytes, ...]) -> None:
        info = c.handoff
        if info is not None and info[0] in ids:
            self.round_wanted[info] = True
            node.close(c)  # the body went out first, on the same stream

    def on_stored(self, node: SimNode, env: Env) -> None:
        if env.recipient == node.idx:
            eid = envelope_id(env.raw)
            if eid not in self.delivered:
                self.delivered[eid] = self.sim.now - env.sent_at

    # --- hostile nodes -----------------------------------------------------------

    def flood(self, node: SimNode, conns: list[Conn]) -> None:
        rng, cfg = self.sim.rng, self.cfg
        if self.sim.now >= self.send_end:
            return
        n = _poisson(rng.random, cfg.flood_rate * cfg.anti_entropy_interval)
        for _ in range(n):
            shard = rng.choice(sorted(node.shards)) if node.shards is not None else ALL
            env = self.make_env(shard, node.idx, -1)
            self.stats.spam += 1
            node.store(envelope_id(env.raw), None)
        for c in conns:
            link = c.link
            if link is not None and link.active and cfg.junk_ids:
                for f in link.announce([rng.randbytes(32) for _ in range(cfg.junk_ids)]):
                    node.send(c, f)

    # --- churn ---------------------------------------------------------------------

    def _churn(self) -> None:
        sim, cfg = self.sim, self.cfg
        if sim.now >= self.send_end or not cfg.churn:
            return
        if self.online:
            node = self.nodes[sim.rng.choice(sorted(self.online))]
            self.take_down(node, crash=sim.rng.random() < 0.5)
            if sim.rng.random() < cfg.permanent:
                self.gone.add(node.idx)
                sim.at(sim.rng.expovariate(1 / 300), self._newcomer)
            else:
                back = sim.now + sim.rng.expovariate(1 / cfg.downtime)
                if back > self.send_end:
                    back = self.send_end + sim.rng.uniform(0, 300)
                keep = sim.rng.random() < cfg.keep_store
                sim.at(back - sim.now, self.bring_up, node, keep)
        rate = cfg.churn / 3600 * max(1, len(self.online))
        sim.at(sim.rng.expovariate(rate), self._churn)

    def _newcomer(self) -> None:
        node = self.new_node(self._kind())
        self.bring_up(node, keep_store=False)

    def _kind(self) -> str:
        cfg = self.cfg
        if self.sim.rng.random() >= cfg.hostile:
            return "honest"
        return "dropper" if self.sim.rng.random() < 0.5 else "flooder"

    # --- the run ---------------------------------------------------------------------

    def run(self) -> Result:
        t0 = time.perf_counter()
        self.setup()
        self.sim.run(self.end)
        return self._result(time.perf_counter() - t0)

    def setup(self) -> None:
        """Create the nodes and schedule their start, the traffic and the churn."""
        cfg, sim = self.cfg, self.sim
        n_hostile = round(cfg.nodes * cfg.hostile)
        hostile = sorted(sim.rng.sample(range(cfg.nodes), n_hostile))
        kinds = {i: ("dropper" if j % 2 == 0 else "flooder") for j, i in enumerate(hostile)}
        for i in range(cfg.nodes):
            self.new_node(kinds.get(i, "honest"))
        order = list(range(cfg.nodes))
        for i in order:  # nodes come up over the first 30 s, each bootstrapping from earlier ones
            sim.at(30.0 * i / cfg.nodes, self.bring_up, self.nodes[i], False)
        sim.at(cfg.warmup, self._next_message)
        sim.at(cfg.warmup, self._churn)

    def _result(self, wall: float) -> Result:
        cfg = self.cfg
        now = self.sim.now
        honest = [n for n in self.nodes if n.kind == "honest"]
        node_seconds = sum(n.online_time + (now - n.online_since if n.online else 0.0)
                           for n in honest)
        per_day = 86400 / node_seconds if node_seconds else 0.0
        # Envelopes flow only while users send: what grows with them is counted per day of
        # sending, the rest (reconciliation, peer exchange) per day of the whole run.
        busy = per_day * now / (cfg.minutes * 60)
        env_sent = sum(n.sent_env for n in honest)
        eligible = [eid for eid, e in self.envs.items()
                    if e.recipient >= 0 and e.recipient not in self.gone]
        lat = sorted(self.delivered[e] for e in eligible if e in self.delivered)
        up = sorted(self.delivered[e] for e in eligible
                    if e in self.delivered and self.envs[e].online)
        online_honest = [n for n in honest if n.online]
        stored_end = (sum(sum(len(self.envs[i].raw) for i, _ in _stored(n)) for n in online_honest)
                      / max(1, len(online_honest)))
        shard_nodes = (cfg.nodes / (1 << cfg.shards_k) * cfg.carry if self.sharded
                       else float(cfg.nodes))
        return Result(
            nodes=cfg.nodes,
            mode=f"k={cfg.shards_k}" if self.sharded else "full",
            messages=self.stats.messages,
            eligible=len(eligible),
            delivered=len(lat),
            p50=_pct(up, 0.50),
            p99=_pct(up, 0.99),
            p99_all=_pct(lat, 0.99),
            sent_per_day=env_sent * busy + (sum(n.sent for n in honest) - env_sent) * per_day,
            sent_env_per_day=env_sent * busy,
            stored_per_day=sum(n.stored_bytes for n in honest) * busy,
            recon_per_day=sum(n.recon for n in honest) * per_day,
            stored_end=stored_end,
            wall=wall,
            events=self.sim.events,
            violations=dict(self.stats.violations),
            spam=self.stats.spam,
            rate=cfg.rate,
            shard_nodes=shard_nodes,
            env_size=len(next(iter(self.envs.values())).raw) if self.envs else 0,
            cfg=cfg,
            flooders=sum(n.kind == "flooder" for n in self.nodes) / len(self.nodes),
        )


def _stored(node: SimNode) -> list[tuple[bytes, int]]:
    idx_keys = {ALL} if node.shards is None else set(node.shards)
    return [(i, e) for i, e in node.have.items() if _in(node, i, idx_keys)]


def _in(node: SimNode, eid: bytes, keys: set[int]) -> bool:
    env = node.world.envs.get(eid)
    return env is not None and (ALL in keys or env.shard in keys)


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _poisson(draw: Callable[[], float], lam: float) -> int:
    """Knuth's method with the run's own RNG."""
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= draw()
        if p <= limit:
            return k
        k += 1

