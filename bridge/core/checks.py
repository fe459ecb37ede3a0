"""The checks every node runs on an envelope, cheapest first.

    size → canonical header → expiry window → proof of work
    → (version 2) stamp signature

One blake3 call (the PoW check, about a microsecond) comes before anything that
costs a signature verification or a Diffie-Hellman (tens of microseconds), so
an attacker without work to show cannot make a node do expensive work. A
version-2 envelope's stamp signature (one Ed25519 verification) is checked only
once its proof holds. The duplicate check needs the store and is the caller's.
"""

from __future__ import annotations

from typing import Final

from bridge.core import pow, stamp
from bridge.core.envelope import (
    VERSION_STAMPED,
    Envelope,
    parse_envelope,
    stamp_message,
    with_nonce,
)
from bridge.core.errors import ExpiredError, FromFutureError, WeakProofOfWorkError

MAX_TTL: Final = 7 * 24 * 3600
MAX_CLOCK_SKEW: Final = 300
DEFAULT_BASE_BITS: Final = 18


def check_expiry(expiry: int, now: int) -> None:
    if expiry <= now:
        raise ExpiredError(f"envelope expired {now - expiry} s ago")
    if expiry > now + MAX_TTL + MAX_CLOCK_SKEW:
        raise FromFutureError(
            f"envelope expires {expiry - now} s from now; at most {MAX_TTL} s is allowed"
        )


def pow_bits_required(env: Envelope, now: int, base_bits: int) -> int:
    return bits_required(env.size, env.expiry, now, base_bits)


def bits_required(size: int, expiry: int, now: int, base_bits: int) -> int:
    """What a node asks at ``now`` of an envelope of ``size`` bytes expiring at
    ``expiry``. The sender measured the lifetime with its own clock; allow for ours
    being behind by up to the skew bound, so honest senders are never short."""
    return pow.required_bits(size, max(0, expiry - now - MAX_CLOCK_SKEW), base_bits)


def check_pow(env: Envelope, now: int, base_bits: int) -> None:
    need = pow_bits_required(env, now, base_bits)
    have = pow.work_bits(env.pow_digest, env.nonce)
    if have < need:
        raise WeakProofOfWorkError(f"proof of work has {have} bits; {need} are required")


def check_envelope(data: bytes, *, now: int, base_bits: int = DEFAULT_BASE_BITS) -> Envelope:
    """Parse and run every stateless check; raise the first error met."""
    env = parse_envelope(data)  # size first, then the fixed header
    check_expiry(env.expiry, now)
    check_pow(env, now, base_bits)
    if env.version == VERSION_STAMPED:
        stamp.verify_signature(env.stamp_key, env.stamp_signature, stamp_message(env.raw))
    return env


def work_needed(raw: bytes, *, now: int, base_bits: int = DEFAULT_BASE_BITS) -> tuple[bytes, int]:
    """(digest, bits) a sender must solve for ``raw`` to pass check_pow at ``now``."""
    env = parse_envelope(raw)
    ttl = max(0, env.expiry - now)
    return env.pow_digest, pow.required_bits(env.size, ttl, base_bits)


def stamp_inline(raw: bytes, *, now: int, base_bits: int = DEFAULT_BASE_BITS) -> bytes:
    """Solve on the calling thread: for tests and tiny difficulties only.
    The daemon solves in bridge.net.workers.WorkerPool."""
    digest, bits = work_needed(raw, now=now, base_bits=base_bits)
    start = 0
    while True:
        nonce = pow.solve_range(digest, bits, start, 1 << 20)
        if nonce is not None:
            return with_nonce(raw, nonce)
        start += 1 << 20
