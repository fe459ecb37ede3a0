"""Proof of work over blake3's extendable output.

    seed   = CTX ‖ digest            (digest: blake3 of the envelope without its nonce)
    stream = blake3(seed) XOF
    proof  : the 64-byte block at offset 64·nonce has ≥ D leading zero bits

Verifying is one blake3 call. Solving asks blake3 for thousands of output
blocks at once (native, SIMD) and scans their first bytes in bulk, so an honest
Python node runs within a small factor of native code instead of two orders of
magnitude behind it (a per-nonce loop pays Python's call overhead per hash).

Difficulty grows with size and remaining lifetime (Bitmessage: cost ∝ size ×
TTL): one more bit for every doubling of KiB × hours above the base. Beyond two
days the lifetime counts once more per started two days (cost ∝ size × TTL²
there), so the long-lived envelopes that hold a store's space longest pay more
than linearly for it; up to two days nothing changes.
"""

from __future__ import annotations

from typing import Final

import blake3

from bridge.core import crypto

_blake3: Final = blake3.blake3

BLOCK: Final = 64
MAX_NONCE: Final = (1 << 58) - 1  # 64·nonce must fit blake3's 64-bit seek
MAX_BITS: Final = 64
CHUNK_BLOCKS: Final = 4096  # 256 KiB per blake3 call: stays in L2, measured fastest

SIZE_UNIT: Final = 1024  # bytes
TTL_UNIT: Final = 3600  # seconds
LONG_LIFE: Final = 2 * 24 * 3600  # lifetimes beyond this cost more than linearly


_SEED_PREFIX: Final = crypto.CTX_POW_INPUT.encode() + b"\x00"


def pow_seed(digest: bytes) -> bytes:
    """The blake3 input whose output stream the nonce indexes."""
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    return _SEED_PREFIX + digest


def leading_zero_bits(head: bytes) -> int:
    """Leading zero bits of the first 8 bytes of ``head`` (at most 64)."""
    value = int.from_bytes(head[:8], "big")
    return 64 - value.bit_length()


def work_bits(digest: bytes, nonce: int) -> int:
    """Leading zero bits of the nonce's output block: the proof's strength."""
    if not 0 <= nonce <= MAX_NONCE:
        return 0
    # Inlined (no pow_seed / leading_zero_bits calls): this runs on every
    # envelope a node receives, and the call overhead was a third of its cost.
    if len(digest) != 32:
        raise ValueError("digest must be 32 bytes")
    head: bytes = _blake3(_SEED_PREFIX + digest).digest(length=8, seek=BLOCK * nonce)
    return 64 - int.from_bytes(head, "big").bit_length()


def verify(digest: bytes, nonce: int, bits: int) -> bool:
    return work_bits(digest, nonce) >= bits


def required_bits(size: int, ttl: int, base_bits: int) -> int:
    """Difficulty for an envelope of ``size`` bytes living ``ttl`` more seconds."""
    return min(MAX_BITS, base_bits + price_bits(size, ttl))


def price_bits(size: int, ttl: int) -> int:
    """Bits above the base for ``size`` bytes kept ``ttl`` seconds: log2 of the price units.

    units = KiB × hours × ⌈ttl / 2 days⌉ (each at least 1): linear in the
    lifetime up to two days, quadratic beyond.
    """
    hours = max(1, -(-ttl // TTL_UNIT))
    units = max(1, -(-size // SIZE_UNIT)) * hours * max(1, -(-ttl // LONG_LIFE))
    return (units - 1).bit_length()


def expected_attempts(bits: int) -> float:
    return float(2**bits)


def solve_range(digest: bytes, bits: int, start: int, count: int) -> int | None:
    """The first nonce in [start, start+count) whose block has ``bits`` zero bits.

    Pure and bounded, so a worker process can be given ranges and stopped
    between them.
    """
    if bits < 0 or bits > MAX_BITS:
        raise ValueError("bits out of range")
    end = min(start + count, MAX_NONCE + 1)
    hasher = blake3.blake3(pow_seed(digest))
    zero_bytes = bits // 8
    # A block holds when its first 8 bytes, read big-endian, are below this.
    below = 1 << (MAX_BITS - bits)
    second = 1 if zero_bytes >= 2 else 0  # a second zero byte is needed too
    pos = start
    while pos < end:
        n = min(CHUNK_BLOCKS, end - pos)
        buf: bytes = hasher.digest(length=BLOCK * n, seek=BLOCK * pos)
        if zero_bytes == 0:
            # Under 8 bits a solution is near: test every block.
            for j in range(n):
                if leading_zero_bits(buf[BLOCK * j : BLOCK * j + 8]) >= bits:
                    return pos + j
        else:
            # First bytes of all blocks as one string; C-speed search for a zero. One
            # block in 256 is a hit: each costs an index, a second-byte test and,
            # rarely, one integer of 8 bytes, with no function call (a call per hit
            # was a third of the time of a chunk).
            heads = buf[::BLOCK]
            j = heads.find(0)
            while j >= 0:
                o = BLOCK * j
                if buf[o + second] == 0 and int.from_bytes(buf[o : o + 8], "big") < below:
                    return pos + j
                j = heads.find(0, j + 1)
        pos += n
    return None


def solve_per_nonce(digest: bytes, bits: int, start: int, count: int) -> int | None:
    """The naive solver — one hash call per nonce. Kept as the benchmark baseline."""
    seed = pow_seed(digest)
    for nonce in range(start, start + count):
        head: bytes = blake3.blake3(seed).digest(length=8, seek=BLOCK * nonce)
        if leading_zero_bits(head) >= bits:
            return nonce
    return None
