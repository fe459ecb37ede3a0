"""Envelopes whose proof of work is exactly a chosen number of bits, for store-policy tests.

``make_envelope`` stops at the first nonce that passes, so its work is random
(half of the time a bit more than asked); the store's eviction order depends on
the work an envelope shows, so these tests pin it.
"""

from __future__ import annotations

import os

from bridge.core import crypto, pow
from bridge.core.checks import pow_bits_required
from bridge.core.envelope import Envelope, Kind, assemble, parse_envelope, signed_header, with_nonce
from tests.gossip_support import LOW_BITS


def with_work(env: Envelope, bits: int) -> Envelope:
    """``env`` re-stamped with a nonce of exactly ``bits`` leading zero bits."""
    digest, start = env.pow_digest, 0
    while True:
        n = pow.solve_range(digest, bits, start, 1 << 24)
        if n is None:
            start += 1 << 24
        elif pow.work_bits(digest, n) == bits:
            return parse_envelope(with_nonce(env.raw, n))
        else:
            start = n + 1


def priced(
    now: int,
    *,
    ttl: int,
    extra: int = 0,
    tag: bytes | None = None,
    bucket: int = 256,
    base_bits: int = LOW_BITS,
) -> Envelope:
    """A valid envelope at ``now`` with exactly ``extra`` bits above what a node requires."""
    header = signed_header(Kind.DIRECT, tag or os.urandom(16), now + ttl)
    body = os.urandom(bucket + crypto.AEAD_TAG_SIZE)
    env = parse_envelope(assemble(header, os.urandom(32), body))
    return with_work(env, pow_bits_required(env, now, base_bits) + extra)


def work(env: Envelope) -> int:
    """The work an envelope shows: 2^(its proof's leading zero bits)."""
    return 1 << pow.work_bits(env.pow_digest, env.nonce)
