"""The addresses a node knows: peers heard of, and its own, so it never peers with itself.

Every address learnt from the network goes through ``bridge.core.peers.parse_peer``
and is kept in its canonical form; an invalid one, or the unspecified address,
is dropped. The book is bounded and bucketed (``bridge.core.addrbook``), and
strangers cannot make the node dial private ranges (``PeerBook``).

Which addresses reach this very node. Known without dialling: the advertised
address, and the listen port on this machine's own hosts — the bound host;
when bound to loopback, ``localhost`` and the unspecified address (which the
kernel routes to loopback); when bound to every interface, also any loopback
address, the host name and each local address seen as the near end of a peer
link. Everything else (a public name, a NAT or Tor forward, another spelling)
is learnt by dialling it once: if the HELLO that comes back carries this
node's own per-run node id, the dialled address is this node, and it is
remembered for the rest of the run — never dialled again, never passed on in
peer exchange, never listed.

A peer that echoes our node id back can only make us believe that *its own*
address is us, which stops us dialling it: no more than it could get by not
answering.
"""

from __future__ import annotations

import os
import random
import socket
import time
from typing import Final

from bridge.core.addrbook import LOCAL_SCOPES, AddrBook, Scope, scope_of
from bridge.core.errors import BadPeerError
from bridge.core.gossip_wire import MAX_PEERS
from bridge.core.peers import is_loopback_host, parse_peer, peer_host
from bridge.core.shards import Prefix

MAX_FOUND: Final = 256  # addresses found to be this node (each one was dialled)
MAX_LOCAL_IPS: Final = 64
_ANY_V4: Final = "0.0.0.0"  # noqa: S104 - recognised, never bound
_UNSPECIFIED: Final = frozenset({"", _ANY_V4, "::"})
_rng = random.SystemRandom()


def canonical(addr: str) -> str | None:
    """``addr`` in the one canonical form, or None if it is no valid peer address."""
    try:
        return parse_peer(addr)
    except BadPeerError:
        return None


def dialable(peer: str) -> bool:
    """False for the unspecified address: it names no host to anyone else."""
    return peer_host(peer) not in _UNSPECIFIED


class SelfAddresses:
    def __init__(self) -> None:
        self.bind_host = ""
        self.port = 0
        self.advertise: str | None = None
        self.local_ips: set[str] = set()
        self.found: dict[str, None] = {}  # dialled and found to be this node, oldest first
        self._hostname = socket.gethostname().lower()

    def configure(self, bind_host: str, port: int, advertise: str) -> None:
        self.bind_host = bind_host.strip("[]").lower()
        self.port = port
        self.advertise = canonical(advertise)

    def note_local_ip(self, ip: str) -> None:
        """An address of this machine, seen as the near end of a peer link."""
        if ip and len(self.local_ips) < MAX_LOCAL_IPS:
            self.local_ips.add(ip.lower())

    def mark(self, peer: str) -> None:
        """``peer`` (canonical) was dialled and turned out to be this node."""
        self.found[peer] = None
        if len(self.found) > MAX_FOUND:
            del self.found[next(iter(self.found))]

    def __contains__(self, peer: object) -> bool:
        """Whether the canonical address ``peer`` reaches this node."""
        if not isinstance(peer, str):
            return False
        if peer in self.found or peer == self.advertise:
            return True
        host, _, port = peer.rpartition(":")
        if not self.port or port != str(self.port):
            return False
        host = host.strip("[]")
        bind = self.bind_host
        if host == bind:
            return True
        if bind in _UNSPECIFIED:
            return (host in _UNSPECIFIED or is_loopback_host(host) or host == self._hostname
                    or host in self.local_ips)
        if is_loopback_host(bind):  # the kernel sends the unspecified address to loopback
            return host == "localhost" or host == ("::" if ":" in bind else _ANY_V4)
        return False


class PeerBook:
    """Addresses heard of (a bucketed ``AddrBook``), this node's own, and which ranges
    strangers may make it dial.

    Scope rule. An address a stranger announces (PEERS, a HELLO's listen address)
    is taken only if its scope is dialable: global addresses, DNS names (checked
    again once resolved, at dial time) and onion names always; private,
    link-local and loopback ranges only when ``dial_private`` is true, or — when
    it is left unset — for the scopes this node itself lives in: that of the host
    it binds (a node bound to 127.0.0.1 dials loopback peers, one bound to
    192.168.1.5 private ones; one bound to every interface, none), of its
    advertised address and of every peer configured by hand. Reserved ranges
    (documentation, multicast, benchmarking, the unspecified address) never.
    """

    def __init__(self, key: bytes | None = None) -> None:
        self.book = AddrBook(key or os.urandom(32))
        self.selves = SelfAddresses()
        self.dial_private: bool | None = None  # None: the scopes this node lives in
        self.local_scopes: set[Scope] = set()

    @property
    def known(self) -> dict[str, None]:
        return dict.fromkeys(e.addr for e in self.book.entries())

    def live_in(self, host: str) -> None:
        """This node binds, advertises or was configured with ``host``: its scope is dialable."""
        sc = scope_of(host)
        if sc in LOCAL_SCOPES:
            self.local_scopes.add(sc)

    def may_dial(self, host: str) -> bool:
        """Whether a stranger's announcement of ``host`` may be dialled."""
        return self.scope_allowed(scope_of(host))

    def scope_allowed(self, sc: Scope) -> bool:
        if sc in (Scope.GLOBAL, Scope.NAME, Scope.ONION):
            return True
        if sc not in LOCAL_SCOPES or self.dial_private is False:
            return False
        return bool(self.dial_private) or sc in self.local_scopes

    def learn(self, addr: str, source: str = "", *, first_hand: bool = False,
              shards: tuple[Prefix, ...] = ()) -> bool:
        """Remember an address a stranger announced, if usable, in scope and not ours,
        with the shard prefixes its node carries (``()``: not said)."""
        peer = canonical(addr)
        if (not peer or not dialable(peer) or peer in self.selves
                or not self.may_dial(peer_host(peer))):
            return False
        return self.book.add(peer, source, time.monotonic(), first_hand=first_hand,
                             shards=shards)

    def attempt(self, addr: str) -> None:
        self.book.attempt(addr, time.monotonic())

    def good(self, addr: str, shards: tuple[Prefix, ...] = ()) -> None:
        """``addr`` was dialled and answered with a valid HELLO naming ``shards``."""
        self.book.good(addr, time.monotonic(), shards)

    def found_self(self, peer: str) -> bool:
        """``peer`` was dialled and turned out to be this node; False if already known."""
        if peer in self.selves:
            return False
        self.selves.mark(peer)
        self.book.remove(peer)
        return True

    def exchange(self, exclude: str) -> list[str]:
        """What to send in PEERS: tried addresses first, then ones their nodes announced
        themselves; never second-hand ones this node has not reached, never its own."""
        out = self.book.offer(MAX_PEERS, {exclude}, _rng)
        return [a for a in out if a not in self.selves]

    def carried(self, addrs: list[str]) -> list[tuple[Prefix, ...]]:
        """What each address's node carries, as far as the book knows (``()``: not known)."""
        entries = [self.book.entry(a) for a in addrs]
        return [e.shards if e is not None else () for e in entries]
