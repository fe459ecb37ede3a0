"""Proof of work: policy, the bulk solver against the per-nonce baseline."""

from __future__ import annotations

import os

import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import pow


def test_required_bits_grows_with_size_and_lifetime() -> None:
    base = 20
    assert pow.required_bits(300, 600, base) == base
    assert pow.required_bits(1024, 3600, base) == base
    assert pow.required_bits(2048, 3600, base) == base + 1
    assert pow.required_bits(1024, 2 * 3600, base) == base + 1
    assert pow.required_bits(4096, 4 * 3600, base) == base + 4
    assert pow.required_bits(65618, 7 * 86400, base) == base + 16  # 14 if it were linear
    # monotone in both
    for size in (1, 1000, 5000, 70000):
        for ttl in (0, 100, 10_000, 600_000):
            assert pow.required_bits(size + 1024, ttl, base) >= pow.required_bits(size, ttl, base)
            assert pow.required_bits(size, ttl + 3600, base) >= pow.required_bits(size, ttl, base)


def _linear_bits(size: int, ttl: int, base: int) -> int:
    """The first version's rule: cost ∝ size × ttl at every lifetime."""
    units = max(1, -(-size // 1024)) * max(1, -(-ttl // 3600))
    return min(64, base + (units - 1).bit_length())


@given(st.integers(1, 70_000), st.integers(0, 2 * 86400), st.integers(0, 40))
@settings(max_examples=300, deadline=None)
def test_up_to_two_days_the_price_is_the_linear_one(size: int, ttl: int, base: int) -> None:
    assert pow.required_bits(size, ttl, base) == _linear_bits(size, ttl, base)


@given(st.integers(1, 70_000), st.integers(2 * 86400 + 1, 7 * 86400), st.integers(0, 30))
@settings(max_examples=300, deadline=None)
def test_beyond_two_days_the_price_grows_faster_than_the_lifetime(
    size: int, ttl: int, base: int
) -> None:
    bits = pow.required_bits(size, ttl, base)
    assert bits >= _linear_bits(size, ttl, base) + 1  # at least twice the linear price
    # Work ∝ 2^(bits − base) grows with ttl²: the price per second of life rises past two days.
    units = max(1, -(-size // 1024)) * -(-ttl // 3600) * -(-ttl // pow.LONG_LIFE)
    assert 2 ** (bits - base) >= units > max(1, -(-size // 1024)) * -(-ttl // 3600)


def test_work_bits_is_the_xof_block_at_the_nonce() -> None:
    digest = bytes(range(32))
    stream = blake3.blake3(pow.pow_seed(digest)).digest(length=64 * 10)
    for n in range(10):
        head = int.from_bytes(stream[64 * n : 64 * n + 8], "big")
        assert pow.work_bits(digest, n) == 64 - head.bit_length()


@given(st.binary(min_size=32, max_size=32), st.integers(0, 14))
@settings(max_examples=60, deadline=None)
def test_bulk_solver_finds_the_same_first_nonce_as_the_per_nonce_loop(
    digest: bytes, bits: int
) -> None:
    fast = pow.solve_range(digest, bits, 0, 1 << 18)
    slow = pow.solve_per_nonce(digest, bits, 0, 1 << 18)
    assert fast == slow
    if fast is not None:
        assert pow.verify(digest, fast, bits)


def test_solver_respects_range_bounds() -> None:
    digest = os.urandom(32)
    first = pow.solve_range(digest, 10, 0, 1 << 16)
    assert first is not None
    assert pow.solve_range(digest, 10, 0, first) is None
    assert pow.solve_range(digest, 10, first, 1) == first
    after = pow.solve_range(digest, 10, first + 1, 1 << 16)
    assert after is None or after > first


def test_nonce_out_of_range_has_no_work() -> None:
    assert pow.work_bits(bytes(32), pow.MAX_NONCE + 1) == 0
    assert pow.work_bits(bytes(32), -1) == 0
