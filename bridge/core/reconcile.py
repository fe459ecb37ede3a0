"""Range-based set reconciliation (Negentropy-style), sans-IO.

Both sides hold sets of (shard key, expiry, id) items sorted by a 42-byte key
``shard key (2 bytes) ‖ expiry (8 bytes, big-endian) ‖ id (32 bytes)``, so each
shard prefix is one contiguous range of keys (``PrefixView``: a session covers one
prefix, docs/sharding.md). The initiator sends the
fingerprint of its whole set; each side answers every range whose fingerprints
differ by splitting it into ``buckets`` sub-ranges (each with a fingerprint) or,
when the range is small, by listing its ids. Ranges that match are skipped, so
the bytes exchanged grow with the difference between the sets, not their size.
When the initiator has nothing more to send it knows exactly which ids it has
that the peer lacks (``have``) and which the peer has that it lacks (``need``).

The fingerprint is additive (the sum of ids as little-endian integers modulo
2**256, hashed together with the count), so a store can keep prefix sums and
answer any range in O(1) after an O(n) rebuild. The exact byte format is in
docs/gossip.md.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Final, Protocol

import blake3

from bridge.core.errors import (
    LocalProtocolError,
    MalformedError,
    TruncatedError,
    UnknownVersionError,
)

PROTOCOL_VERSION: Final = 0x62  # 0x61 was the 40-byte key of version 1 (no shard key)
ID_SIZE: Final = 32
SHARD_SIZE: Final = 2
ID_OFFSET: Final = SHARD_SIZE + 8
KEY_SIZE: Final = ID_OFFSET + ID_SIZE
FINGERPRINT_SIZE: Final = 16
MODULUS: Final = 1 << 256
INF_KEY: Final = b"\xff" * 3  # above every real key (expiries are < 2**63)
MIN_KEY: Final = b""
DEFAULT_BUCKETS: Final = 4  # measured: fewest bytes per difference at 100k items
DEFAULT_IDLIST_MAX: Final = 4  # a range with fewer items is sent as an id list
DEFAULT_FRAME_LIMIT: Final = 128 * 1024
MAX_ROUNDS: Final = 64  # an initiator gives up on a peer that never converges
_FP_CONTEXT: Final = "ParanoIM 2026-11 reconcile fingerprint"


class Mode(enum.IntEnum):
    SKIP = 0
    FINGERPRINT = 1
    IDLIST = 2


class RangeSource(Protocol):
    """What reconciliation needs from a store's sorted (shard, expiry, id) index."""

    def __len__(self) -> int: ...
    def lower_bound(self, key: bytes) -> int:
        """Index of the first item whose key is >= ``key``."""
        ...

    def key_at(self, i: int) -> bytes: ...
    def ids(self, lo: int, hi: int) -> list[bytes]: ...
    def fingerprint(self, lo: int, hi: int) -> bytes: ...


def make_key(shard: int, expiry: int, item_id: bytes) -> bytes:
    if not 0 <= expiry < 1 << 63 or len(item_id) != ID_SIZE or not 0 <= shard < 1 << 16:
        raise LocalProtocolError("bad reconcile item")
    return shard.to_bytes(SHARD_SIZE, "big") + expiry.to_bytes(8, "big") + item_id


class PrefixView:
    """The keys of ``source`` whose shard key lies in ``[start, end)``, indexed from 0:
    a session over one shard prefix. Positions are found again on every call, so
    insertions between rounds (anywhere in the store) do not shift the view."""

    __slots__ = ("_hi", "_lo", "source")

    def __init__(self, source: RangeSource, start: int, end: int) -> None:
        self.source = source
        self._lo = start.to_bytes(SHARD_SIZE, "big")
        self._hi = end.to_bytes(SHARD_SIZE, "big") if end < 1 << 16 else INF_KEY

    def _range(self) -> tuple[int, int]:
        return self.source.lower_bound(self._lo), self.source.lower_bound(self._hi)

    def __len__(self) -> int:
        lo, hi = self._range()
        return hi - lo

    def lower_bound(self, key: bytes) -> int:
        lo, hi = self._range()
        return min(max(self.source.lower_bound(key), lo), hi) - lo

    def key_at(self, i: int) -> bytes:
        return self.source.key_at(self.source.lower_bound(self._lo) + i)

    def ids(self, lo: int, hi: int) -> list[bytes]:
        base = self.source.lower_bound(self._lo)
        return self.source.ids(base + lo, base + hi)

    def fingerprint(self, lo: int, hi: int) -> bytes:
        base = self.source.lower_bound(self._lo)
        return self.source.fingerprint(base + lo, base + hi)


def fingerprint_of(total: int, count: int) -> bytes:
    """The fingerprint of a range whose ids sum to ``total`` (any multiple of 2**256 off)."""
    data = (total % MODULUS).to_bytes(32, "little") + _varint(count)
    out: bytes = blake3.blake3(data, derive_key_context=_FP_CONTEXT).digest(FINGERPRINT_SIZE)
    return out


def minimal_bound(prev_key: bytes, next_key: bytes) -> bytes:
    """The shortest key b with prev_key < b <= next_key (keeps bounds small on the wire)."""
    shared = 0
    while shared < len(prev_key) and prev_key[shared] == next_key[shared]:
        shared += 1
    return next_key[: shared + 1]


# --- wire encoding -------------------------------------------------------------


def _varint(n: int) -> bytes:
    """Base-128 big-endian varint, high bit set on every byte but the last (Negentropy's)."""
    if n < 0:
        raise LocalProtocolError("varint must be non-negative")
    out = bytearray([n & 0x7F])
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.reverse()
    return bytes(out)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def varint(self) -> int:
        n = 0
        for _ in range(10):  # 70 bits: more than any field needs
            if self.pos >= len(self.data):
                raise TruncatedError("reconcile message ends inside a varint")
            b = self.data[self.pos]
            self.pos += 1
            n = (n << 7) | (b & 0x7F)
            if not b & 0x80:
                return n
        raise MalformedError("reconcile varint too long")

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise TruncatedError("reconcile message ends inside a field")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


@dataclass
class _Writer:
    limit: int
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    @staticmethod
    def bound(key: bytes) -> bytes:
        # varint(0): infinity; varint(n): the first n − 1 bytes of a key (a key prefix).
        if key == INF_KEY:
            return b"\x00"
        return _varint(len(key) + 1) + key

    def emit(self, key: bytes, mode: Mode, payload: bytes) -> None:
        part = self.bound(key) + bytes([mode]) + payload
        self.parts.append(part)
        self.size += len(part)

    def message(self) -> bytes:
        return bytes([PROTOCOL_VERSION]) + b"".join(self.parts)


def _read_bound(r: _Reader) -> bytes:
    n = r.varint()
    if n == 0:
        return INF_KEY
    if n - 1 > KEY_SIZE:
        raise MalformedError("reconcile bound longer than a key")
    key = r.take(n - 1)
    if key >= INF_KEY:
        raise MalformedError("reconcile bound out of range")
    return key


# --- the state machine ---------------------------------------------------------


class Reconciler:
    """One side of a reconciliation session over a ``RangeSource``.

    The initiator calls ``initiate()`` once and then ``receive()`` on each reply
    until it returns ``None``; ``have`` and ``need`` then hold the difference.
    The responder is stateless: ``receive()`` on each message, send back the
    result (never ``None`` for a responder).
    """

    def __init__(
        self,
        source: RangeSource,
        *,
        initiator: bool,
        buckets: int = DEFAULT_BUCKETS,
        idlist_max: int = DEFAULT_IDLIST_MAX,
        frame_limit: int = DEFAULT_FRAME_LIMIT,
    ) -> None:
        if buckets < 2 or idlist_max < 2 or frame_limit < 4096:
            raise LocalProtocolError("bad reconcile parameters")
        self.source = source
        self.initiator = initiator
        self.buckets = buckets
        self.idlist_max = idlist_max
        self.frame_limit = frame_limit
        self.have: list[bytes] = []  # ids we hold that the peer lacks (initiator only)
        self.need: list[bytes] = []  # ids the peer holds that we lack (initiator only)
        self.rounds = 0
        self.done = False

    def initiate(self) -> bytes:
        if not self.initiator or self.rounds:
            raise LocalProtocolError("initiate() is for a fresh initiator")
        self.rounds = 1
        w = _Writer(self.frame_limit)
        n = len(self.source)
        if n < self.idlist_max:
            w.emit(INF_KEY, Mode.IDLIST, self._idlist(0, n))
        else:
            # One fingerprint first: two matching sets finish in one round trip.
            w.emit(INF_KEY, Mode.FINGERPRINT, self.source.fingerprint(0, n))
        return w.message()

    def receive(self, message: bytes) -> bytes | None:
        if self.done:
            raise LocalProtocolError("reconciliation already finished")
        if self.initiator:
            self.rounds += 1
            if self.rounds > MAX_ROUNDS:
                raise MalformedError("reconciliation does not converge")
        r = _Reader(message)
        if not r.more() or r.take(1)[0] != PROTOCOL_VERSION:
            raise UnknownVersionError("unknown reconcile protocol version")
        src = self.source
        w = _Writer(self.frame_limit)
        prev_key = MIN_KEY
        skipping = False  # a skip range is owed before the next emitted range
        while r.more():
            upper = _read_bound(r)
            if upper <= prev_key:
                raise MalformedError("reconcile bounds must increase")
            mode = r.varint()
            lo, hi = src.lower_bound(prev_key), src.lower_bound(upper)
            if mode == Mode.SKIP:
                skipping = True
            elif mode == Mode.FINGERPRINT:
                theirs = r.take(FINGERPRINT_SIZE)
                if src.fingerprint(lo, hi) == theirs:
                    skipping = True
                else:
                    if skipping:
                        w.emit(prev_key, Mode.SKIP, b"")
                        skipping = False
                    if w.size + self._split_cost(hi - lo) > self.frame_limit:
                        self._rest(w, prev_key)
                        break
                    self._split(w, lo, hi, upper)
            elif mode == Mode.IDLIST:
                count = r.varint()
                if count * ID_SIZE > len(message):
                    raise TruncatedError("id list longer than the message")
                listed = [r.take(ID_SIZE) for _ in range(count)]
                if self.initiator:
                    # Both lists keep the order of the sets (expiry, then id), not of a hash
                    # set's iteration, so a run is the same in every process.
                    theirs_ids = set(listed)
                    mine = src.ids(lo, hi)
                    self.have.extend(i for i in mine if i not in theirs_ids)
                    ours = set(mine)
                    for i in listed:
                        if i not in ours:
                            ours.add(i)  # a repeated id is needed once
                            self.need.append(i)
                    skipping = True
                else:
                    if skipping:
                        w.emit(prev_key, Mode.SKIP, b"")
                        skipping = False
                    if w.size + (hi - lo) * ID_SIZE + 64 > self.frame_limit:
                        self._rest(w, prev_key)
                        break
                    w.emit(upper, Mode.IDLIST, self._idlist(lo, hi))
            else:
                raise MalformedError(f"unknown reconcile mode {mode}")
            prev_key = upper
        if not w.parts and self.initiator:
            self.done = True
            return None
        return w.message()

    # --- helpers -----------------------------------------------------------------

    def _idlist(self, lo: int, hi: int) -> bytes:
        return _varint(hi - lo) + b"".join(self.source.ids(lo, hi))

    def _split_cost(self, n: int) -> int:
        if n < self.idlist_max:
            return n * ID_SIZE + 48
        return self.buckets * (FINGERPRINT_SIZE + 48)

    def _split(self, w: _Writer, lo: int, hi: int, upper: bytes) -> None:
        n = hi - lo
        if n < self.idlist_max:
            w.emit(upper, Mode.IDLIST, self._idlist(lo, hi))
            return
        src = self.source
        buckets = min(self.buckets, n)  # never an empty bucket: bounds must increase
        per, extra = divmod(n, buckets)
        cur = lo
        for i in range(buckets):
            end = cur + per + (1 if i < extra else 0)
            fp = src.fingerprint(cur, end)
            bound = (
                upper if i == buckets - 1 else minimal_bound(src.key_at(end - 1), src.key_at(end))
            )
            w.emit(bound, Mode.FINGERPRINT, fp)
            cur = end

    def _rest(self, w: _Writer, lower: bytes) -> None:
        # The frame is full: one fingerprint covers everything left, to be split next round.
        lo = self.source.lower_bound(lower)
        w.emit(INF_KEY, Mode.FINGERPRINT, self.source.fingerprint(lo, len(self.source)))
