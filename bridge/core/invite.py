"""Invitation links: what a contact needs to reach you, in one line or QR code.

    paranoim:1/<address>?nick=<pct-encoded>&peer=<host:port>&peer=...&c=<checksum>

Version 1. ``nick`` is a suggested petname; each ``peer`` is a node the new
contact can bootstrap from; ``c`` is 6 base32 characters of a blake3 hash of
everything before ``&c=``, so a mistyped or truncated link is refused with a
reason rather than silently giving a wrong contact. Parameters are written in
one order, so a link has one spelling. The address carries its own checksum.
"""

from __future__ import annotations

import base64
import urllib.parse
from dataclasses import dataclass
from typing import Final

from bridge.core import crypto
from bridge.core.address import decode_address, encode_address, normalize
from bridge.core.errors import BadAddressError, BadInviteError, BadPeerError
from bridge.core.peers import parse_peer

SCHEME: Final = "paranoim:"
VERSION: Final = 1
MAX_LINK: Final = 2048
MAX_PEERS: Final = 8


@dataclass(frozen=True, slots=True)
class Invite:
    public: bytes
    nick: str = ""
    peers: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return encode_address(self.public)


def _checksum(body: str) -> str:
    digest = crypto.derive(crypto.CTX_INVITE_CHECKSUM, body.encode("utf-8"), 5)
    return base64.b32encode(digest).decode("ascii").lower()[:6]


def _check_peer(peer: str) -> str:
    try:
        return parse_peer(peer)
    except BadPeerError as exc:
        raise BadInviteError(f"peer '{peer[:80]}' in the link: {exc}") from None


def encode_invite(invite: Invite) -> str:
    params: list[tuple[str, str]] = []
    if invite.nick:
        params.append(("nick", invite.nick))
    params.extend(("peer", _check_peer(p)) for p in invite.peers[:MAX_PEERS])
    body = f"{SCHEME}{VERSION}/{invite.address}"
    if params:
        body += "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe=":")
    sep = "&" if params else "?"
    return f"{body}{sep}c={_checksum(body)}"


def parse_invite(text: str) -> Invite:
    """An Invite from a link, or from a bare address (no nick, no peers)."""
    s = text.strip()
    if len(s) > MAX_LINK:
        raise BadInviteError(f"the link is {len(s)} characters long; at most {MAX_LINK}")
    if not s.lower().startswith(SCHEME):
        try:
            return Invite(public=decode_address(s))
        except BadAddressError as exc:
            raise BadInviteError(
                f"this is neither a ParanoIM link (paranoim:…) nor an address: {exc}") from None
    body, sep, check = s.rpartition("c=")
    if not sep or body[-1:] not in ("?", "&"):
        raise BadInviteError("the link has no checksum at its end: it was cut off")
    body = body[:-1]
    if check != _checksum(body):
        raise BadInviteError("the link's checksum does not match: it was mistyped or cut")
    rest = body[len(SCHEME):]
    version, slash, rest = rest.partition("/")
    if not slash or version != str(VERSION):
        raise BadInviteError(
            f"link version {version!r} is not supported; this program reads version {VERSION}")
    addr, _, query = rest.partition("?")
    try:
        public = decode_address(normalize(addr))
    except BadAddressError as exc:
        raise BadInviteError(f"the address in the link is wrong: {exc}") from None
    nick = ""
    peers: list[str] = []
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True,
                                             strict_parsing=bool(query), max_num_fields=16):
        if key == "nick":
            nick = value[:64]
        elif key == "peer" and len(peers) < MAX_PEERS:
            peers.append(_check_peer(value))
    return Invite(public=public, nick=nick, peers=tuple(peers))
