"""Valid envelopes for gossip and store tests, stamped at a low difficulty.

The bodies are random bytes (relays never open them); the header and the proof
of work are real, built with the core's own functions.
"""

from __future__ import annotations

import os

from bridge.core import crypto, pow
from bridge.core.checks import pow_bits_required
from bridge.core.envelope import (
    Envelope,
    Kind,
    assemble,
    parse_envelope,
    pow_digest,
    signed_header,
    with_nonce,
)

LOW_BITS = 4  # base difficulty used by the tests: a few dozen hashes per envelope


def make_envelope(
    now: int,
    *,
    ttl: int = 3600,
    tag: bytes | None = None,
    bucket: int = 256,
    base_bits: int = LOW_BITS,
    expiry: int | None = None,
    weak: bool = False,
) -> Envelope:
    """A valid envelope (or one whose PoW is one bit short, with ``weak``)."""
    header = signed_header(Kind.DIRECT, tag or os.urandom(16), expiry or now + ttl)
    ct = os.urandom(bucket + crypto.AEAD_TAG_SIZE)
    raw = assemble(header, os.urandom(32), ct)
    env = parse_envelope(raw)
    need = pow_bits_required(env, now, base_bits)
    digest = pow_digest(raw)
    if weak:
        nonce = next(n for n in range(1 << 16) if pow.work_bits(digest, n) < need)
    else:
        found = pow.solve_range(digest, need, 0, 1 << 20)
        assert found is not None
        nonce = found
    return parse_envelope(with_nonce(raw, nonce))
