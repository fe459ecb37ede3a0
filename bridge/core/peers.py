"""Peer addresses: the one parser for ``host:port`` wherever a peer is named (the
command line, the config file, invitation links, the web UI, peer exchange).

A peer is a host name, an IPv4 address or a bracketed IPv6 address, then a colon
and a port from 1 to 65535. The canonical form lower-cases the host and drops
leading zeros from the port, so one peer has one spelling and is dialled once.
"""

from __future__ import annotations

import ipaddress
import re

from bridge.core.errors import BadPeerError

MAX_PEER_LENGTH = 262  # a 253-character DNS name, brackets, colon and port
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
                       r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?")
EXAMPLE = "192.0.2.7:45069"


def parse_peer(text: str) -> str:
    """``text`` as a canonical ``host:port``; BadPeerError saying what is wrong."""
    peer = text.strip()
    if len(peer) > MAX_PEER_LENGTH:
        raise BadPeerError(f"a peer is host:port, such as {EXAMPLE}; got {len(peer)} "
                           "characters, too long for one")
    if "/" in peer or "@" in peer:
        raise BadPeerError(f"a peer is host:port, not a URL, such as {EXAMPLE}; "
                           f"got {peer[:80]!r}")
    host, sep, port = peer.rpartition(":")
    if not sep or not host:
        raise BadPeerError(f"a peer is host:port, such as {EXAMPLE}; got {peer[:80]!r}")
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadPeerError(f"a peer is host:port with a port from 1 to 65535, such as {EXAMPLE}; "
                           f"got {peer[:80]!r}")
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        try:
            ip6 = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadPeerError(
                f"a peer is host:port; {host[:80]!r} is not an IPv6 address") from None
        return f"[{ip6.compressed}]:{int(port)}"
    if ":" in host:
        raise BadPeerError("a peer is host:port; write an IPv6 address in brackets, such as "
                           "[2001:db8::7]:45069; "
                           f"got {peer[:80]!r}")
    if not host.isascii() or not _HOSTNAME.fullmatch(host):
        raise BadPeerError("a peer is host:port with a host name or IP address, such as "
                           f"{EXAMPLE}; got {peer[:80]!r}")
    return f"{host.rstrip('.')}:{int(port)}"


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this
    machine's loopback: ``localhost`` or an address in 127.0.0.0/8 or ::1."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def peer_host(peer: str) -> str:
    """The host of a canonical peer, without IPv6 brackets."""
    return peer.rpartition(":")[0].strip("[]")


def is_onion(peer: str) -> bool:
    return peer_host(peer).endswith(".onion")
