"""Gossip frames: one encode and one parse per message, keyed by a type byte.

Every frame is ``type (1 byte) ‖ body``; all integers big-endian. Sizes are
bounded and checked before anything is read: a frame longer than
``MAX_FRAME_SIZE``, an unknown type, a count that does not match the length,
or trailing bytes are all ``RemoteProtocolError``s. The byte layouts are in
docs/gossip.md.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

from bridge.core.envelope import MAX_ENVELOPE_SIZE
from bridge.core.errors import (
    LocalProtocolError,
    MalformedError,
    OversizeError,
    TruncatedError,
    UnknownKindError,
)
from bridge.core.reconcile import DEFAULT_FRAME_LIMIT
from bridge.core.shards import (
    EVERYTHING,
    KEY_BITS,
    MAX_PREFIXES,
    Prefix,
    check_canonical,
    overlap,
)

PROTOCOL_VERSION: Final = 2
VERSIONS: Final = frozenset({1, 2})  # a version-1 peer carries every shard
FLAG_LIGHT: Final = 1
FLAG_HANDOFF: Final = 2  # version 2: a hand-off link (docs/sharding.md); reserved, refused
ID_SIZE: Final = 32
NODE_ID_SIZE: Final = 16
MAX_IDS: Final = 1024  # ids per have/want frame
MAX_PEERS: Final = 32
PEERS_CARRIED: Final = 0x80  # PEERS count byte: each address followed by its prefixes
MAX_ADDR: Final = 255
MAX_FRAME_SIZE: Final = max(1 + MAX_ENVELOPE_SIZE, 1 + DEFAULT_FRAME_LIMIT + 1024)
_HELLO: Final = struct.Struct(">BBBQ16sB")
_PREFIX: Final = struct.Struct(">BH")  # depth, the prefix's start (a 16-bit shard key)
_ADDR_CHARS: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]_"
)


class FrameType(enum.IntEnum):
    HELLO = 0x01
    HAVE = 0x02
    WANT = 0x03
    ENVELOPE = 0x04
    RECONCILE = 0x05  # to the responder
    RECONCILE_REPLY = 0x06  # to the initiator
    PEERS = 0x07
    WATCH_SHARD = 0x08  # a light node asks for a shard prefix (was WATCH, a tag list)
    BYE = 0x09
    FIND_SHARD = 0x0A  # which nodes carry this prefix? (version 2)
    SHARD_PEERS = 0x0B  # the answer: carriers of the prefix asked


class ByeReason(enum.IntEnum):
    NORMAL = 0  # shutting down or dropping a surplus link
    VERSION = 1  # protocol version unknown
    CLOCK = 2  # clocks differ beyond the skew bound
    PROTOCOL = 3  # the peer broke the protocol (malformed or unexpected frame)
    INVALID = 4  # the peer sent an invalid envelope (PoW, expiry, size)
    FLOOD = 5  # the peer exceeded its byte or envelope budget
    BANNED = 6  # the peer is banned for a while
    DUPLICATE = 7  # another link to the same node is kept
    SELF = 8  # the peer is this very node


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    min_bits: int  # the least PoW difficulty (base bits) the sender accepts
    clock: int  # the sender's unix time, seconds
    node_id: bytes  # random per start; detects self-links and duplicates
    light: bool  # a light node stores nothing for others
    listen: str  # "host:port" others may dial, or "" (peer exchange)
    shards: tuple[Prefix, ...] = EVERYTHING  # the prefixes it carries (version 2)
    handoff: bool = False  # version 2: a hand-off link (reserved)

    def __post_init__(self) -> None:
        if len(self.node_id) != NODE_ID_SIZE or not 0 <= self.min_bits <= 64:
            raise LocalProtocolError("bad hello")
        if self.version == 1 and (self.shards != EVERYTHING or self.handoff):
            raise LocalProtocolError("a version-1 hello carries every shard, no hand-off")
        _check_addr(self.listen, allow_empty=True)
        try:
            check_canonical(self.shards)
        except MalformedError as e:
            raise LocalProtocolError(str(e)) from None


@dataclass(frozen=True, slots=True)
class Have:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Want:
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class EnvelopeBody:
    raw: bytes


@dataclass(frozen=True, slots=True)
class Reconcile:
    payload: bytes
    reply: bool  # False: initiator → responder; True: responder → initiator
    prefix: Prefix  # the shard prefix the session covers


@dataclass(frozen=True, slots=True)
class Peers:
    """Addresses for peer exchange. ``carried``: None for the plain list (what a version-1
    peer sends and reads); else, for each address, the prefixes its node carries as the
    sender knows them, ``()`` when it does not know (sent only to version-2 peers)."""

    addrs: tuple[str, ...]
    carried: tuple[tuple[Prefix, ...], ...] | None = None

    def __post_init__(self) -> None:
        if self.carried is None:
            return
        if len(self.carried) != len(self.addrs):
            raise LocalProtocolError("one prefix list per address")
        for prefixes in self.carried:
            try:
                if prefixes:
                    check_canonical(prefixes)
            except MalformedError as e:
                raise LocalProtocolError(str(e)) from None


@dataclass(frozen=True, slots=True)
class WatchShard:
    """A light node asks for every envelope under ``prefix`` (never for tags)."""

    prefix: Prefix


@dataclass(frozen=True, slots=True)
class Bye:
    reason: ByeReason
    text: str


@dataclass(frozen=True, slots=True)
class FindShard:
    prefix: Prefix


@dataclass(frozen=True, slots=True)
class ShardPeers:
    """Carriers of ``prefix`` as the sender knows them: each address with its node's
    prefixes, of which at least one overlaps ``prefix``."""

    prefix: Prefix
    addrs: tuple[str, ...]
    carried: tuple[tuple[Prefix, ...], ...]

    def __post_init__(self) -> None:
        Peers(self.addrs, self.carried)  # the same checks
        if not all(any(overlap(p, self.prefix) for p in c) for c in self.carried):
            raise LocalProtocolError("a carrier that carries nothing of the prefix")


Message = (Hello | Have | Want | EnvelopeBody | Reconcile | Peers | WatchShard | Bye
           | FindShard | ShardPeers)


def _check_addr(addr: str, *, allow_empty: bool = False) -> None:
    raw = addr.encode("ascii", "replace")
    if (not raw and not allow_empty) or len(raw) > MAX_ADDR or not set(raw) <= _ADDR_CHARS:
        raise MalformedError(f"bad peer address {addr[:64]!r}")


def _ids_frame(t: FrameType, items: tuple[bytes, ...], size: int, cap: int) -> bytes:
    if len(items) > cap or any(len(i) != size for i in items):
        raise LocalProtocolError("too many or badly sized items for one frame")
    return bytes([t]) + struct.pack(">H", len(items)) + b"".join(items)


def encode(msg: Message) -> bytes:
    if isinstance(msg, Hello):
        addr = msg.listen.encode("ascii")
        flags = (FLAG_LIGHT if msg.light else 0) | (FLAG_HANDOFF if msg.handoff else 0)
        head = _HELLO.pack(msg.version, msg.min_bits, flags, msg.clock, msg.node_id, len(addr))
        if msg.version == 1:
            return bytes([FrameType.HELLO]) + head + addr
        shards = b"".join(_PREFIX.pack(p.depth, p.start) for p in msg.shards)
        return bytes([FrameType.HELLO]) + head + addr + bytes([len(msg.shards)]) + shards
    if isinstance(msg, Have):
        return _ids_frame(FrameType.HAVE, msg.ids, ID_SIZE, MAX_IDS)
    if isinstance(msg, Want):
        return _ids_frame(FrameType.WANT, msg.ids, ID_SIZE, MAX_IDS)
    if isinstance(msg, EnvelopeBody):
        return bytes([FrameType.ENVELOPE]) + msg.raw
    if isinstance(msg, Reconcile):
        t = FrameType.RECONCILE_REPLY if msg.reply else FrameType.RECONCILE
        return bytes([t]) + _PREFIX.pack(msg.prefix.depth, msg.prefix.start) + msg.payload
    if isinstance(msg, Peers):
        if len(msg.addrs) > MAX_PEERS:
            raise LocalProtocolError("too many peer addresses")
        flag = 0 if msg.carried is None else PEERS_CARRIED
        parts = [bytes([FrameType.PEERS, flag | len(msg.addrs)])]
        for i, a in enumerate(msg.addrs):
            _check_addr(a)
            parts.append(bytes([len(a)]) + a.encode("ascii"))
            if msg.carried is not None:
                parts.append(_prefixes(msg.carried[i]))
        return b"".join(parts)
    if isinstance(msg, WatchShard):
        return bytes([FrameType.WATCH_SHARD]) + _PREFIX.pack(msg.prefix.depth, msg.prefix.start)
    if isinstance(msg, FindShard):
        return bytes([FrameType.FIND_SHARD]) + _PREFIX.pack(msg.prefix.depth, msg.prefix.start)
    if isinstance(msg, ShardPeers):
        entries = encode(Peers(msg.addrs, msg.carried))[1:]
        return (bytes([FrameType.SHARD_PEERS]) + _PREFIX.pack(msg.prefix.depth, msg.prefix.start)
                + entries)
    text = msg.text.encode("utf-8")[:MAX_ADDR]
    return bytes([FrameType.BYE, msg.reason, len(text)]) + text


def _parse_ids(body: bytes, size: int, cap: int) -> tuple[bytes, ...]:
    if len(body) < 2:
        raise TruncatedError("id list frame too short")
    (n,) = struct.unpack_from(">H", body)
    if n > cap:
        raise OversizeError(f"{n} items in one frame; at most {cap}")
    if len(body) != 2 + n * size:
        raise MalformedError("id list length does not match its count")
    return tuple(body[2 + i * size : 2 + (i + 1) * size] for i in range(n))


def parse(frame: bytes) -> Message:
    """Decode one frame; ``RemoteProtocolError`` subclasses on anything wrong."""
    if len(frame) > MAX_FRAME_SIZE:
        raise OversizeError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    if not frame:
        raise TruncatedError("empty frame")
    t, body = frame[0], bytes(frame[1:])
    if t == FrameType.HELLO:
        return _parse_hello(body)
    if t == FrameType.HAVE:
        return Have(_parse_ids(body, ID_SIZE, MAX_IDS))
    if t == FrameType.WANT:
        return Want(_parse_ids(body, ID_SIZE, MAX_IDS))
    if t == FrameType.ENVELOPE:
        if len(body) > MAX_ENVELOPE_SIZE:
            raise OversizeError("envelope frame too large")
        return EnvelopeBody(body)
    if t in (FrameType.RECONCILE, FrameType.RECONCILE_REPLY):
        if len(body) > DEFAULT_FRAME_LIMIT + 1024:
            raise OversizeError("reconcile frame too large")
        if len(body) < _PREFIX.size:
            raise TruncatedError("reconcile frame without its prefix")
        prefix = _parse_prefix(body)
        return Reconcile(body[_PREFIX.size :], t == FrameType.RECONCILE_REPLY, prefix)
    if t == FrameType.PEERS:
        return _parse_peers(body)
    if t == FrameType.WATCH_SHARD:  # exactly a prefix: the old tag list is refused here
        if len(body) != _PREFIX.size:
            raise MalformedError("WATCH_SHARD is a prefix (depth u8, prefix u16), no tags")
        return WatchShard(_parse_prefix(body))
    if t in (FrameType.FIND_SHARD, FrameType.SHARD_PEERS):
        return _parse_find(t, body)
    if t == FrameType.BYE:
        if len(body) < 2 or len(body) != 2 + body[1]:
            raise MalformedError("malformed bye")
        try:
            reason = ByeReason(body[0])
        except ValueError:
            reason = ByeReason.PROTOCOL
        return Bye(reason, body[2:].decode("utf-8", "replace"))
    raise UnknownKindError(f"unknown gossip frame type 0x{t:02x}")


def _parse_prefix(raw: bytes, at: int = 0) -> Prefix:
    depth, start = _PREFIX.unpack_from(raw, at)
    if depth > KEY_BITS or start & ((1 << (KEY_BITS - depth)) - 1):
        raise MalformedError(f"bad shard prefix {start:#06x}/{depth}")
    return Prefix(start, depth)


def _parse_hello(body: bytes) -> Hello:
    """Version 1: the fixed head and the listen address; version 2 adds the carried
    prefixes (count u8, 1..16, × depth u8 · start u16), sorted and disjoint, and flag
    bit 1 (hand-off). Any other version: only the head is read, so the link can
    answer BYE VERSION."""
    if len(body) < _HELLO.size:
        raise TruncatedError("hello too short")
    version, bits, flags, clock, node_id, alen = _HELLO.unpack_from(body)
    end = _HELLO.size + alen
    if len(body) < end or bits > 64:
        raise MalformedError("malformed hello")
    addr = body[_HELLO.size : end]
    _check_addr(addr.decode("latin-1"), allow_empty=True)
    listen = addr.decode("ascii")
    if version != 2:
        if version == 1 and (len(body) != end or flags > FLAG_LIGHT):
            raise MalformedError("malformed hello")
        return Hello(version, bits, clock, node_id, bool(flags & FLAG_LIGHT), listen)
    if len(body) < end + 1 or flags > FLAG_LIGHT | FLAG_HANDOFF:
        raise MalformedError("malformed hello")
    n = body[end]
    if not 1 <= n <= MAX_PREFIXES or len(body) != end + 1 + n * _PREFIX.size:
        raise MalformedError("hello's shard prefixes do not match their count")
    shards = tuple(_parse_prefix(body, end + 1 + i * _PREFIX.size) for i in range(n))
    check_canonical(shards)
    return Hello(version, bits, clock, node_id, bool(flags & FLAG_LIGHT), listen, shards,
                 bool(flags & FLAG_HANDOFF))


def _prefixes(prefixes: tuple[Prefix, ...]) -> bytes:
    return bytes([len(prefixes)]) + b"".join(_PREFIX.pack(p.depth, p.start) for p in prefixes)


def _parse_peers(body: bytes) -> Peers:
    """count u8 (bit 7: entries carry prefixes; the rest ≤ ``MAX_PEERS``), then per
    entry: len u8 · address, and with bit 7: n u8 (0: not known; ≤ ``MAX_PREFIXES``) ·
    n × (depth u8 · prefix u16), sorted and disjoint as in HELLO."""
    if not body or body[0] & (PEERS_CARRIED - 1) > MAX_PEERS:
        raise MalformedError("malformed peers frame")
    with_prefixes = bool(body[0] & PEERS_CARRIED)
    pos, out, carried = 1, [], []
    for _ in range(body[0] & (PEERS_CARRIED - 1)):
        if pos >= len(body) or pos + 1 + body[pos] > len(body):
            raise TruncatedError("peers frame ends inside an address")
        addr = body[pos + 1 : pos + 1 + body[pos]].decode("latin-1")
        _check_addr(addr)
        out.append(addr)
        pos += 1 + body[pos]
        if with_prefixes:
            if pos >= len(body):
                raise TruncatedError("peers frame ends before an address's prefixes")
            n, pos = body[pos], pos + 1
            if n > MAX_PREFIXES or pos + n * _PREFIX.size > len(body):
                raise MalformedError("a peer address's prefixes do not match their count")
            prefixes = tuple(_parse_prefix(body, pos + i * _PREFIX.size) for i in range(n))
            if prefixes:
                check_canonical(prefixes)
            carried.append(prefixes)
            pos += n * _PREFIX.size
    if pos != len(body):
        raise MalformedError("trailing bytes after peer addresses")
    return Peers(tuple(out), tuple(carried) if with_prefixes else None)


def _parse_find(t: int, body: bytes) -> FindShard | ShardPeers:
    """FIND_SHARD: depth u8 · prefix u16. SHARD_PEERS: the same prefix, then a PEERS body
    whose entries carry their prefixes (count bit 7), each entry at least one prefix and
    one that overlaps the prefix asked."""
    if len(body) < _PREFIX.size or (t == FrameType.FIND_SHARD and len(body) != _PREFIX.size):
        raise MalformedError("malformed shard lookup frame")
    prefix = _parse_prefix(body)
    if t == FrameType.FIND_SHARD:
        return FindShard(prefix)
    peers = _parse_peers(body[_PREFIX.size :])
    if peers.carried is None or not all(
            any(overlap(p, prefix) for p in c) for c in peers.carried):
        raise MalformedError("a carrier in SHARD_PEERS that carries nothing of the prefix")
    return ShardPeers(prefix, peers.addrs, peers.carried)
