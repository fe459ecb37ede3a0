"""The addresses a node knows: peers heard of, and its own, so it never peers with itself.

Every address learnt from the network goes through ``bridge.core.peers.parse_peer``
and is kept in its canonical form; an invalid one, or the unspecified address,
is dropped. The book is bounded.

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

import socket
from typing import Final

from bridge.core.errors import BadPeerError
from bridge.core.gossip_wire import MAX_PEERS
from bridge.core.peers import is_loopback_host, parse_peer, peer_host

MAX_KNOWN: Final = 1000  # addresses heard of through peer exchange
MAX_FOUND: Final = 256  # addresses found to be this node (each one was dialled)
MAX_LOCAL_IPS: Final = 64
_ANY_V4: Final = "0.0.0.0"  # noqa: S104 - recognised, never bound
_UNSPECIFIED: Final = frozenset({"", _ANY_V4, "::"})


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
    """Addresses heard of (insertion order: the latest last) and this node's own."""

    def __init__(self) -> None:
        self.known: dict[str, None] = {}
        self.selves = SelfAddresses()

    def learn(self, addr: str) -> None:
        """Remember an address heard of, in canonical form, if it is usable and not ours."""
        peer = canonical(addr)
        if peer and dialable(peer) and peer not in self.selves and len(self.known) < MAX_KNOWN:
            self.known[peer] = None

    def found_self(self, peer: str) -> bool:
        """``peer`` was dialled and turned out to be this node; False if already known."""
        if peer in self.selves:
            return False
        self.selves.mark(peer)
        self.known.pop(peer, None)
        return True

    def exchange(self, exclude: str) -> list[str]:
        """What to send in PEERS: the latest addresses heard of, never this node's own."""
        out: list[str] = []
        for a in reversed(self.known):
            if len(out) == MAX_PEERS:
                break
            if a != exclude and a not in self.selves:
                out.append(a)
        return out[::-1]
