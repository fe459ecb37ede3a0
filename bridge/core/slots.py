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
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import blake3

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
