"""Stamps for tests: deterministic one-time keys, proofs solved inline (cheap at the
low difficulties tests use)."""

from __future__ import annotations

import itertools

from bridge.core import pow
from bridge.core.stamp import Stamp, StampOrder, order

_seeds = itertools.count(1)


def distinct_bytes(n: int) -> bytes:
    """``n`` bytes (a multiple of 4), different at every call: seeds and secrets."""
    return next(_seeds).to_bytes(4, "big") * (n // 4)


def solve(o: StampOrder) -> Stamp:
    nonce = pow.solve_range(o.digest, o.bits, 0, 1 << 24)
    assert nonce is not None
    return o.minted(nonce)


def mint_stamp(bucket: int, *, now: int, bits: int, expiry: int | None = None) -> Stamp:
    """A stamp for ``bucket`` living two days from ``now`` (or until ``expiry``)."""
    return solve(order(bucket, expiry if expiry is not None else now + 2 * 86_400, now, bits,
                       distinct_bytes))
