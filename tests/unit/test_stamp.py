"""Stamps: proof of work minted ahead, spent once (core.stamp, docs/stamps.md)."""

from __future__ import annotations

import pytest

from bridge.core import pow
from bridge.core.errors import BadSignatureError, LocalProtocolError, WeakProofOfWorkError
from bridge.core.stamp import (
    BUCKETS,
    envelope_size,
    order,
    stamp_digest,
    stamp_id,
    verify_signature,
)
from bridge.core.stamppool import StampPool, bits_to_spend
from tests.stamp_support import distinct_bytes, solve

NOW = 1_800_000_000
DAY = 86_400


def test_a_minted_stamp_proves_the_work_a_relay_asks_and_signs_only_for_its_minter() -> None:
    o = order(256, NOW + 2 * DAY, NOW, base_bits=0, random=distinct_bytes)
    assert o.bits == pow.required_bits(envelope_size(256), 2 * DAY, 0)
    stamp = solve(o)
    assert stamp.bits >= bits_to_spend(stamp, NOW, 0)
    body = b"the rest of the envelope"
    sig = stamp.sign(body)
    verify_signature(stamp.public, sig, body)
    with pytest.raises(BadSignatureError):
        verify_signature(stamp.public, sig, body + b"!")
    with pytest.raises(WeakProofOfWorkError):
        o.minted(next(n for n in range(1000) if pow.work_bits(o.digest, n) < o.bits))


def test_the_digest_binds_size_class_expiry_and_key_and_the_id_only_the_key() -> None:
    key, other = b"\x01" * 32, b"\x02" * 32
    d = stamp_digest(key, 256, NOW)
    assert len({d, stamp_digest(key, 1024, NOW), stamp_digest(key, 256, NOW + 1),
                stamp_digest(other, 256, NOW)}) == 4
    assert stamp_id(key) != stamp_id(other) and len(stamp_id(key)) == 32
    with pytest.raises(LocalProtocolError):
        stamp_digest(key, 300, NOW)
    with pytest.raises(LocalProtocolError):
        stamp_digest(b"short", 256, NOW)


def test_envelope_sizes_follow_the_buckets() -> None:
    assert [envelope_size(b) for b in BUCKETS] == [b + 130 + 16 for b in BUCKETS]


def test_the_pool_orders_what_is_missing_once_and_spends_the_oldest_first() -> None:
    pool = StampPool({0: 2, 1: 1}, life=2 * DAY, min_life=DAY)
    orders = pool.wanted(NOW, 0, distinct_bytes)
    assert sorted(o.bucket for o in orders) == [256, 256, 1024]
    assert pool.wanted(NOW, 0, distinct_bytes) == []  # in progress: not ordered twice
    first, second = [solve(o) for o in orders if o.bucket == 256]
    pool.add(second)
    pool.add(first)
    assert pool.ready() == {256: 2, 1024: 0, 4096: 0, 16384: 0, 65536: 0}
    taken = pool.take(256, NOW, 0)
    assert taken is not None and taken.expiry == min(first.expiry, second.expiry)
    assert pool.take(1024, NOW, 0) is None  # still minting
    pool.cancel(next(o for o in orders if o.bucket == 1024))
    assert [o.bucket for o in pool.wanted(NOW, 0, distinct_bytes)] == [256, 1024]


def test_a_stamp_too_close_to_expiry_or_short_of_a_raised_minimum_is_not_spent() -> None:
    pool = StampPool({0: 1}, life=2 * DAY, min_life=DAY)
    (o,) = pool.wanted(NOW, 0, distinct_bytes)
    stamp = solve(o)
    pool.add(stamp)
    assert pool.take(256, NOW, base_bits=stamp.bits + 1) is None  # the minimum rose
    assert pool.take(256, NOW + DAY + 1, 0) is None  # too little life left
    pool.purge(NOW + DAY + 1)
    assert pool.ready()[256] == 0
    assert len(pool.wanted(NOW + DAY + 1, 0, distinct_bytes)) == 1
