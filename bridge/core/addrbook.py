"""The address book: a bounded, bucketed record of peer addresses heard of.

Modelled on Bitcoin Core's addrman. Rules:

* Two tables. *new* holds addresses heard of (peer exchange, a peer's HELLO)
  that this node has never linked to; *tried* holds addresses this node dialled
  and got a valid HELLO back from.
* new has ``NEW_BUCKETS`` buckets of ``BUCKET_SIZE``. An address ``a`` heard
  from source ``s`` goes to bucket
  ``H(k, group(s), H(k, group(s), group(a)) mod NEW_PER_SOURCE) mod NEW_BUCKETS``:
  every source group reaches at most ``NEW_PER_SOURCE`` buckets, so one peer (or
  every peer of one /16) fills at most ``NEW_PER_SOURCE × BUCKET_SIZE`` entries
  of the new table however many addresses it sends.
* tried has ``TRIED_BUCKETS`` buckets; ``a`` goes to
  ``H(k, group(a), H(k, a) mod TRIED_PER_GROUP) mod TRIED_BUCKETS``.
* ``k`` is a per-node secret: nobody else can tell which addresses collide.
* A full new bucket takes a newcomer only in place of a *terrible* entry (dialled
  ``TERRIBLE_ATTEMPTS`` times and never linked, or failing ``TERRIBLE_FAILURES``
  times since it last linked); otherwise the newcomer is dropped — what is there
  stays, so a flood cannot wash out what the node already knows.
* A full tried bucket sends its least recently linked entry back to new.
* Peer exchange offers tried addresses first, then addresses peers announced for
  themselves in their own HELLO (first-hand), never addresses heard second-hand
  that this node has not linked to itself.
* Each entry keeps the shard prefixes its node carries (docs/sharding.md), ``()`` while
  unknown, from the best source yet: the HELLO that answered when this node dialled the
  address, else a HELLO that named the address as its sender's own (anyone can claim an
  address), else the latest PEERS entry. ``carriers`` finds the addresses of a prefix.

Which addresses are taken at all is the caller's policy (see ``scope_of``):
strangers' announcements of private, link-local, loopback and reserved ranges
are refused before they reach the book.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from dataclasses import dataclass, field
from typing import Final

import blake3

from bridge.core.peers import peer_host
from bridge.core.shards import Prefix, overlap

# how an entry's prefixes were learnt, worst first (``Entry.learn_shards``)
HEARD: Final = 0  # a PEERS entry
CLAIMED: Final = 1  # the HELLO of a link its sender opened, naming the address as its own
DIALLED: Final = 2  # the HELLO that answered when this node dialled the address
NEW_BUCKETS: Final = 64
TRIED_BUCKETS: Final = 16
BUCKET_SIZE: Final = 16
NEW_PER_SOURCE: Final = 4  # new buckets one source group can reach
TRIED_PER_GROUP: Final = 4  # tried buckets one address group can reach
TERRIBLE_ATTEMPTS: Final = 3
TERRIBLE_FAILURES: Final = 10
MAX_ADDRESSES: Final = (NEW_BUCKETS + TRIED_BUCKETS) * BUCKET_SIZE


class Scope(enum.Enum):
    """What part of the network an address is in."""

    GLOBAL = "global"
    NAME = "name"  # a DNS name: its scope is known only once resolved
    ONION = "onion"
    PRIVATE = "private"  # RFC 1918, shared address space (CGNAT), IPv6 ULA, *.local
    LINK_LOCAL = "link-local"
    LOOPBACK = "loopback"
    RESERVED = "reserved"  # documentation, multicast, benchmarking, unspecified...


LOCAL_SCOPES: Final = frozenset({Scope.PRIVATE, Scope.LINK_LOCAL, Scope.LOOPBACK})
_PRIVATE_NETS: Final = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def ip_scope(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Scope:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return Scope.RESERVED
    if ip.is_loopback:
        return Scope.LOOPBACK
    if ip.is_link_local:
        return Scope.LINK_LOCAL
    if any(ip in n for n in _PRIVATE_NETS):
        return Scope.PRIVATE
    return Scope.GLOBAL if ip.is_global else Scope.RESERVED


def scope_of(host: str) -> Scope:
    """The scope of a host (a name, an IPv4 address, an IPv6 address with or without brackets)."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        return ip_scope(ipaddress.ip_address(host))
    except ValueError:
        pass
    if host == "localhost" or host.endswith(".localhost"):
        return Scope.LOOPBACK
    if host.endswith(".onion"):
        return Scope.ONION
    if host.endswith(".local") or "." not in host:  # mDNS, or a bare LAN host name
        return Scope.PRIVATE
    return Scope.NAME


def group(host: str) -> str:
    """The network group of a host: IPv4 /16, IPv6 /32, a name's last two labels."""
    host = host.strip("[]").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host.endswith(".onion"):
            return "onion:" + host
        return "name:" + ".".join(host.split(".")[-2:])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return "4:" + ".".join(str(ip).split(".")[:2])
    return "6:" + ip.exploded[:9]


@dataclass(slots=True)
class Entry:
    addr: str  # canonical host:port
    source: str  # group of who told us
    first_hand: bool  # the peer at this address announced it itself
    seen: float
    attempts: int = 0  # dials since it last linked (or ever, if it never did)
    last_try: float = -1e18
    last_good: float | None = None
    shards: tuple[Prefix, ...] = ()  # what its node carries; () not known
    shards_from: int = HEARD  # how ``shards`` was learnt: HEARD, CLAIMED or DIALLED

    def learn_shards(self, shards: tuple[Prefix, ...], source: int) -> None:
        """What the node carries, as ``source`` says; a worse source changes nothing."""
        if shards and source >= self.shards_from:
            self.shards, self.shards_from = shards, source

    def terrible(self) -> bool:
        if self.last_good is None:
            return self.attempts >= TERRIBLE_ATTEMPTS
        return self.attempts >= TERRIBLE_FAILURES


@dataclass
class AddrBook:
    key: bytes  # per-node secret, 32 bytes
    new: list[list[Entry]] = field(default_factory=lambda: [[] for _ in range(NEW_BUCKETS)])
    tried: list[list[Entry]] = field(default_factory=lambda: [[] for _ in range(TRIED_BUCKETS)])
    where: dict[str, tuple[bool, int]] = field(default_factory=dict)  # addr -> (tried?, bucket)

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise ValueError("the address book key is 32 bytes")

    def _h(self, *parts: str | int) -> int:
        data = "\x00".join(str(p) for p in parts).encode()
        return int.from_bytes(blake3.blake3(data, key=self.key).digest(8), "big")

    def new_bucket(self, addr: str, source: str) -> int:
        a, s = group(peer_host(addr)), group(source) if source else "?"
        return self._h("new", s, self._h("new-sub", s, a) % NEW_PER_SOURCE) % NEW_BUCKETS

    def tried_bucket(self, addr: str) -> int:
        a = group(peer_host(addr))
        return self._h("tried", a, self._h("tried-sub", addr) % TRIED_PER_GROUP) % TRIED_BUCKETS

    # --- queries ---------------------------------------------------------------

    def __contains__(self, addr: object) -> bool:
        return addr in self.where

    def __len__(self) -> int:
        return len(self.where)

    def entry(self, addr: str) -> Entry | None:
        loc = self.where.get(addr)
        if loc is None:
            return None
        table = self.tried if loc[0] else self.new
        return next((e for e in table[loc[1]] if e.addr == addr), None)

    def entries(self) -> list[Entry]:
        return [e for b in (*self.tried, *self.new) for e in b]

    def counts(self) -> tuple[int, int]:
        """(new, tried)."""
        tried = sum(len(b) for b in self.tried)
        return len(self.where) - tried, tried

    # --- changes ---------------------------------------------------------------

    def add(self, addr: str, source: str, now: float, *, first_hand: bool = False,
            shards: tuple[Prefix, ...] = ()) -> bool:
        """Heard of ``addr`` (canonical) from host ``source`` (``first_hand``: from its own
        HELLO), its node carrying ``shards`` (``()``: not said); True if it is in the book."""
        known = self.entry(addr)
        if known is not None:
            known.seen = now
            known.first_hand = known.first_hand or first_hand
            known.learn_shards(shards, CLAIMED if first_hand else HEARD)
            return True
        b = self.new_bucket(addr, source)
        e = Entry(addr, group(source) if source else "?", first_hand, now)
        e.learn_shards(shards, CLAIMED if first_hand else HEARD)
        return self._put_new(e, b)

    def _put_new(self, e: Entry, b: int) -> bool:
        bucket = self.new[b]
        if len(bucket) >= BUCKET_SIZE:
            worst = next((x for x in bucket if x.terrible()), None)
            if worst is None:
                return False  # what is there stays
            bucket.remove(worst)
            del self.where[worst.addr]
        bucket.append(e)
        self.where[e.addr] = (False, b)
        return True

    def attempt(self, addr: str, now: float) -> None:
        """About to dial ``addr``."""
        e = self.entry(addr)
        if e is not None:
            e.attempts += 1
            e.last_try = now

    def good(self, addr: str, now: float, shards: tuple[Prefix, ...] = ()) -> None:
        """Dialled ``addr`` and got a valid HELLO (naming ``shards``): move it to tried."""
        e = self.entry(addr)
        if e is None:
            e = Entry(addr, "self", True, now)
        else:
            self.remove(addr)
        e.attempts, e.last_good, e.first_hand, e.seen = 0, now, True, now
        e.learn_shards(shards, DIALLED)
        b = self.tried_bucket(addr)
        bucket = self.tried[b]
        if len(bucket) >= BUCKET_SIZE:
            old = min(bucket, key=lambda x: x.last_good or 0.0)
            bucket.remove(old)
            del self.where[old.addr]
            self._put_new(old, self._h("back", old.addr) % NEW_BUCKETS)
        bucket.append(e)
        self.where[addr] = (True, b)

    def remove(self, addr: str) -> None:
        loc = self.where.pop(addr, None)
        if loc is not None:
            table = self.tried if loc[0] else self.new
            table[loc[1]][:] = [e for e in table[loc[1]] if e.addr != addr]

    # --- choosing --------------------------------------------------------------

    def select(self, eligible: list[Entry], rng: random.Random) -> Entry | None:
        """One address to dial among ``eligible``: tried or new at even odds, then a
        random bucket, then a random entry in it — a source that filled its few
        buckets gets no more than its share of buckets, whatever their size."""
        tried = [e for e in eligible if e.last_good is not None]
        new = [e for e in eligible if e.last_good is None]
        pool = tried if tried and (not new or rng.random() < 0.5) else new
        if not pool:
            return None
        buckets: dict[tuple[bool, int], list[Entry]] = {}
        for e in pool:
            buckets.setdefault(self.where[e.addr], []).append(e)
        return rng.choice(buckets[rng.choice(sorted(buckets))])

    def carriers(self, prefix: Prefix, *, vouched: bool = False) -> list[str]:
        """The addresses whose nodes carry some of ``prefix``, as far as the book knows;
        ``vouched``: only those ``offer`` would pass on (reached, or first-hand)."""
        return [e.addr for e in self.entries()
                if any(overlap(p, prefix) is not None for p in e.shards)
                and (not vouched or e.last_good is not None
                     or (e.first_hand and not e.terrible()))]

    def offer(self, n: int, exclude: set[str], rng: random.Random) -> list[str]:
        """Up to ``n`` addresses for peer exchange: tried first, then first-hand new
        ones; never terrible ones, never addresses heard only second-hand."""
        tried = [e.addr for b in self.tried for e in b if e.addr not in exclude]
        heard = [e.addr for b in self.new for e in b
                 if e.first_hand and not e.terrible() and e.addr not in exclude]
        out = rng.sample(tried, min(n, len(tried)))
        return out + rng.sample(heard, min(n - len(out), len(heard)))
