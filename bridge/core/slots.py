"""Inbound connection slots: who may take one, and whom a newcomer displaces.

Caps. An inbound peer is counted by host (its IPv4 address, or its IPv6 /64)
and by prefix (IPv4 /24, IPv6 /48); each has a cap. 127.0.0.1 and ::1 are in
no cap: every peer reaching an onion service arrives from there, as do local
programs, so a cap on them would shut out every onion peer after the first few.
They still count in the node's inbound limit and still face eviction. Every
other loopback address (127.0.0.2 – 127.255.255.254) is an ordinary IPv4
address of its /24, so a local test network meets the real caps.

Eviction, when every inbound slot is taken (after Bitcoin Core's
``SelectNodeToEvict``): a link that has not finished HELLO goes first, the
oldest of them. Otherwise links are protected by what an attacker cannot cheaply
fake, in this order — one link from each of the ``PROTECT_GROUPS`` groups that
come first under a per-node secret hash (an attacker cannot pick which
networks to be in), the ``PROTECT_FAST`` lowest-latency ones, the
``PROTECT_NOVEL`` that most recently delivered an envelope this node did not
have, then the longest-lived half of the rest. Of what remains, the newest link
of the group holding the most links is evicted. If nothing remains, the newcomer
is refused.

Admission, before any of that (``Admission``): every new inbound connection is
charged to a token bucket of its prefix and to one of the whole node, before
the node reads a byte of it, so reconnecting as fast as one can buys a bounded
number of handshakes (and evictions) a second. The shared loopback addresses
are one group with a bucket of their own, larger, since every onion peer
arrives there. A network group (IPv4 /16, IPv6 /32) that has had no connection
admitted for ``quiet`` seconds may pass an empty node bucket through a narrow
lane of its own, so a newcomer from elsewhere gets in while one network
churns.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import blake3

from bridge.core.budget import TokenBucket

PROTECT_GROUPS: Final = 4
PROTECT_FAST: Final = 8
PROTECT_NOVEL: Final = 4
SHARED_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})


def inbound_keys(remote: str) -> tuple[str, str] | None:
    """(host key, prefix key) of an inbound peer's IP; None if it is in no cap."""
    try:
        ip = ipaddress.ip_address(remote.strip("[]"))
    except ValueError:
        return None  # no IP (a Unix socket): nothing to cap by
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if str(ip) in SHARED_LOOPBACK:
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return "4:" + str(ip), "4:" + str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return ("6:" + str(ipaddress.ip_network(f"{ip}/64", strict=False)),
            "6:" + str(ipaddress.ip_network(f"{ip}/48", strict=False)))


def eviction_group(remote: str) -> str:
    """The group a link is evicted from: its prefix, or its exact address if uncapped."""
    keys = inbound_keys(remote)
    return keys[1] if keys is not None else "=" + remote


@dataclass(frozen=True, slots=True)
class Inbound:
    """What eviction knows of one inbound link."""

    key: int  # the caller's handle
    group: str
    since: float  # when it connected
    hello: bool  # finished HELLO
    latency: float = math.inf  # seconds from accept to its HELLO
    last_novel: float = -math.inf  # when it last delivered an envelope new to us


def choose_eviction(links: Sequence[Inbound], secret: bytes) -> int | None:
    """The key of the link to evict to make room for one more, or None: refuse it."""
    waiting = [c for c in links if not c.hello]
    if waiting:
        return min(waiting, key=lambda c: (c.since, c.key)).key
    left = list(links)

    def keyed(g: str) -> bytes:
        return blake3.blake3(g.encode(), key=secret).digest(8)

    firsts: dict[str, Inbound] = {}
    for c in sorted(left, key=lambda c: (c.since, c.key)):
        firsts.setdefault(c.group, c)
    for g in sorted(firsts, key=keyed)[:PROTECT_GROUPS]:
        left.remove(firsts[g])
    left = sorted(left, key=lambda c: (c.latency, c.key))[PROTECT_FAST:]
    novel = sorted((c for c in left if c.last_novel > -math.inf),
                   key=lambda c: -c.last_novel)[:PROTECT_NOVEL]
    left = [c for c in left if c not in novel]
    left = sorted(left, key=lambda c: (c.since, c.key))[len(left) // 2:]
    if not left:
        return None
    sizes: dict[str, list[Inbound]] = {}
    for c in left:
        sizes.setdefault(c.group, []).append(c)
    # the biggest group; of equal ones, the one with the newest link
    biggest = max(sizes.values(), key=lambda cs: (len(cs), max(c.since for c in cs)))
    return max(biggest, key=lambda c: (c.since, c.key)).key


# --- admission: new inbound connections a second ---------------------------------------

LOOPBACK_GROUP: Final = "loopback"


def admission_keys(remote: str) -> tuple[str, str]:
    """(prefix, network group) a new inbound connection is charged to.

    Prefix: IPv4 /24, IPv6 /48, as the caps; network group: IPv4 /16, IPv6 /32, as
    the address book's. 127.0.0.1, ::1 and a peer without an IP are the one
    loopback group.
    """
    try:
        ip = ipaddress.ip_address(remote.strip("[]"))
    except ValueError:
        return LOOPBACK_GROUP, LOOPBACK_GROUP
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if str(ip) in SHARED_LOOPBACK:
        return LOOPBACK_GROUP, LOOPBACK_GROUP
    if isinstance(ip, ipaddress.IPv4Address):
        return (str(ipaddress.ip_network(f"{ip}/24", strict=False)),
                str(ipaddress.ip_network(f"{ip}/16", strict=False)))
    return (str(ipaddress.ip_network(f"{ip}/48", strict=False)),
            str(ipaddress.ip_network(f"{ip}/32", strict=False)))


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """New inbound connections a second, and at once, that a node accepts."""

    prefix_rate: float = 1.0  # per IPv4 /24 or IPv6 /48
    prefix_burst: float = 8.0  # a prefix's cap of links, at once
    loopback_rate: float = 4.0  # 127.0.0.1 and ::1: every onion peer, every local program
    loopback_burst: float = 64.0  # every inbound slot, at once (a restart of a Tor node)
    node_rate: float = 16.0  # the whole node
    node_burst: float = 64.0
    quiet: float = 10.0  # s without an admission after which a network group is new
    quiet_rate: float = 2.0  # admissions of new groups past an empty node bucket
    quiet_burst: float = 8.0
    max_tracked: int = 4096  # prefixes and groups remembered (beyond it the stalest go)


class Admission:
    """Whether a new inbound connection from ``remote`` may be read at all."""

    def __init__(self, limits: AdmissionLimits, now: float) -> None:
        self.limits = limits
        self.node = TokenBucket(limits.node_rate, limits.node_burst, now)
        self.lane = TokenBucket(limits.quiet_rate, limits.quiet_burst, now)
        self.prefixes: OrderedDict[str, TokenBucket] = OrderedDict()
        self.last_admitted: OrderedDict[str, float] = OrderedDict()  # network group -> when
        self.admitted = 0
        self.refused = 0

    def admit(self, remote: str, now: float) -> bool:
        lim = self.limits
        prefix, group = admission_keys(remote)
        bucket = self.prefixes.get(prefix)
        if bucket is None:
            rate, burst = ((lim.loopback_rate, lim.loopback_burst) if prefix == LOOPBACK_GROUP
                           else (lim.prefix_rate, lim.prefix_burst))
            self._prune(now, room=1)
            bucket = self.prefixes[prefix] = TokenBucket(rate, burst, now)
        quiet = self.last_admitted.get(group, -math.inf) <= now - lim.quiet
        if bucket.available(now) < 1 or not (
                self.node.take(1, now) or (quiet and self.lane.take(1, now))):
            self.refused += 1
            return False
        bucket.take(1, now)
        self.prefixes.move_to_end(prefix)
        self.last_admitted[group] = now
        self.last_admitted.move_to_end(group)
        self._prune(now)
        self.admitted += 1
        return True

    def _prune(self, now: float, room: int = 0) -> None:
        """Forget what tells nothing (full buckets, quiet groups), then the stalest."""
        limit = self.limits.max_tracked - room
        if len(self.prefixes) > limit:  # down to 3/4: a pass over them once in n/4 newcomers
            for k in [k for k, b in self.prefixes.items() if b.available(now) >= b.burst]:
                del self.prefixes[k]
            while len(self.prefixes) > limit * 3 // 4:
                self.prefixes.popitem(last=False)
        if len(self.last_admitted) > limit:
            stale = now - self.limits.quiet
            while self.last_admitted and (next(iter(self.last_admitted.values())) <= stale
                                          or len(self.last_admitted) > limit):
                self.last_admitted.popitem(last=False)
