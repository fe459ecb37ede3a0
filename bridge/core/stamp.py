"""Stamps: proof of work minted before the message is written (``docs/stamps.md``).

A stamp is a one-time Ed25519 key pair plus a proof of work over what is known
before any text is typed — the envelope format version, its size class and its
expiry — and the stamp's public key:

    stamp digest = derive(CTX_STAMP_DIGEST, version u8 ‖ bucket index u8 ‖
                          expiry u64 ‖ stamp public key[32])
    proof        = pow.work_bits(stamp digest, nonce) ≥ required bits (pow.md §2)

The envelope that spends the stamp carries the public key, the nonce and a
signature by the stamp key over every other byte of the envelope, so nobody but
the minter can attach the stamp to other content; and its id is derived from the
stamp key alone, so every store keeps at most one envelope per stamp. A relay's
cost per stored envelope is therefore one proof of work, exactly as when the
work covers the envelope's own bytes — only *when* the sender does the work
changes.

Pure: randomness and the clock are arguments; solving is the caller's (the
daemon mints in its worker pool, in idle time). The pool of ready stamps is
``core.stamppool``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from bridge.core import crypto, pow
from bridge.core.errors import BadSignatureError, LocalProtocolError, WeakProofOfWorkError

FORMAT_VERSION: Final = 2  # the envelope version that carries stamps
BUCKETS: Final = (256, 1024, 4096, 16384, 65536)  # padded plaintext sizes (envelope.md §4)
SIG_STAMP: Final = crypto.SIG_STAMP
_DIGEST_INPUT: Final = struct.Struct(">BBQ32s")



def bucket_index(bucket: int) -> int:
    try:
        return BUCKETS.index(bucket)
    except ValueError:
        raise LocalProtocolError(f"{bucket} is not a padding bucket") from None


def stamp_digest(public: bytes, bucket: int, expiry: int) -> bytes:
    """What the stamp's proof of work covers."""
    if len(public) != 32:
        raise LocalProtocolError("a stamp key is 32 bytes")
    if not 0 <= expiry < 2**64:
        raise LocalProtocolError("expiry out of range")
    return crypto.derive(crypto.CTX_STAMP_DIGEST,
                         _DIGEST_INPUT.pack(FORMAT_VERSION, bucket_index(bucket), expiry, public))


def stamp_id(public: bytes) -> bytes:
    """The id of the envelope that spends this stamp (one envelope per stamp)."""
    return crypto.derive(crypto.CTX_STAMP_ID, bytes([FORMAT_VERSION]) + public)


@dataclass(frozen=True, slots=True)
class Stamp:
    """A minted stamp, ready to spend once. ``seed`` is the Ed25519 seed."""

    seed: bytes = field(repr=False)
    public: bytes
    bucket: int
    expiry: int
    nonce: int
    bits: int  # the work found (≥ what was asked)

    def sign(self, message: bytes) -> bytes:
        """The stamp signature over ``SIG_STAMP ‖ message`` (the envelope's other bytes)."""
        return crypto.sign(crypto.ed25519_keypair(self.seed)[1], SIG_STAMP + message)


@dataclass(frozen=True, slots=True)
class StampOrder:
    """What to mint: a fresh key for one size class and expiry, at ``bits``."""

    seed: bytes = field(repr=False)
    public: bytes
    bucket: int
    expiry: int
    bits: int

    @property
    def digest(self) -> bytes:
        return stamp_digest(self.public, self.bucket, self.expiry)

    def minted(self, nonce: int) -> Stamp:
        have = pow.work_bits(self.digest, nonce)
        if have < self.bits:
            raise WeakProofOfWorkError(f"nonce gives {have} bits; {self.bits} were asked")
        return Stamp(self.seed, self.public, self.bucket, self.expiry, nonce, have)


def order(bucket: int, expiry: int, now: int, base_bits: int,
          random: Callable[[int], bytes]) -> StampOrder:
    """A stamp to mint for ``bucket`` expiring at ``expiry``, priced as a relay will
    price it at ``now`` (pow.md §2; spent later, it only has more work than needed)."""
    seed = random(32)
    public = crypto.ed25519_public(seed)
    size = envelope_size(bucket)
    return StampOrder(seed, public, bucket, expiry,
                      pow.required_bits(size, max(0, expiry - now), base_bits))


# The version-2 envelope's fixed part: header 26 ‖ nonce 8 ‖ stamp key 32 ‖
# stamp signature 64, then the body (bucket + 16 bytes of AEAD tag).
FIXED_SIZE: Final = 26 + 8 + 32 + 64


def envelope_size(bucket: int) -> int:
    """Length of a version-2 envelope whose body pads to ``bucket``."""
    return FIXED_SIZE + BUCKETS[bucket_index(bucket)] + crypto.AEAD_TAG_SIZE


def verify_signature(public: bytes, signature: bytes, message: bytes) -> None:
    """Check a stamp signature (after the proof of work: it costs ~50 µs)."""
    try:
        crypto.verify(public, SIG_STAMP + message, signature)
    except BadSignatureError:
        raise BadSignatureError("the stamp signature does not verify") from None
