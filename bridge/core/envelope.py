"""The envelope: the one record that travels between nodes.

Canonical binary layout, version 1 (all integers big-endian):

    off  size  field
    0    1     version         = 1
    1    1     kind            1 direct · 2 room · 3 announcement · 4 receipt
    2    16    recipient tag   rotating; see tags.py
    18   8     expiry          unix seconds
    26   8     nonce           proof-of-work output-block index, < 2**58
    34   32    ephemeral X25519 public key
    66   n+16  XChaCha20-Poly1305 ciphertext of a padded plaintext of n bytes,
               n one of PAD_BUCKETS

Every field has a fixed size, and the ciphertext length must be one of the
bucket sizes, so each envelope has exactly one encoding and its total length is
known from the first bytes. Lengths are checked before anything is read.

    id         = blake3-derive(CTX_ENVELOPE_ID, envelope without the nonce field)
    pow digest = blake3(envelope without the nonce field)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import blake3

from bridge.core import crypto
from bridge.core.errors import (
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
    TruncatedError,
    UnknownKindError,
    UnknownVersionError,
)
from bridge.core.pow import MAX_NONCE

VERSION: Final = 1
HEADER_SIZE: Final = 34  # version .. nonce
SIGNED_HEADER_SIZE: Final = 26  # version .. expiry: what the inner signature covers
BODY_PREFIX: Final = 32  # ephemeral key
PAD_BUCKETS: Final = (256, 1024, 4096, 16384, 65536)
MIN_ENVELOPE_SIZE: Final = HEADER_SIZE + BODY_PREFIX + PAD_BUCKETS[0] + crypto.AEAD_TAG_SIZE
MAX_ENVELOPE_SIZE: Final = HEADER_SIZE + BODY_PREFIX + PAD_BUCKETS[-1] + crypto.AEAD_TAG_SIZE
_VALID_SIZES: Final = frozenset(
    HEADER_SIZE + BODY_PREFIX + b + crypto.AEAD_TAG_SIZE for b in PAD_BUCKETS
)
_HEADER: Final = struct.Struct(">BB16sQQ")


class Kind(enum.IntEnum):
    DIRECT = 1
    ROOM = 2
    ANNOUNCEMENT = 3
    RECEIPT = 4


@dataclass(frozen=True, slots=True)
class Envelope:
    version: int
    kind: Kind
    tag: bytes
    expiry: int
    nonce: int
    ephemeral: bytes
    ciphertext: bytes
    raw: bytes

    @property
    def id(self) -> bytes:
        """blake3-derived id of the canonical bytes (computed on demand: the
        expiry and PoW checks come first and may make it unnecessary)."""
        return envelope_id(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def signed_header(self) -> bytes:
        """Version, kind, tag and expiry: bound into the AEAD and the inner signature."""
        return self.raw[:SIGNED_HEADER_SIZE]

    @property
    def pow_digest(self) -> bytes:
        return pow_digest(self.raw)


def envelope_id(raw: bytes) -> bytes:
    """The id names the content, not the proof of work: the nonce is left out, so
    re-stamping a stored envelope with another nonce cannot make it look new."""
    return crypto.derive(crypto.CTX_ENVELOPE_ID, raw[:SIGNED_HEADER_SIZE] + raw[HEADER_SIZE:])


def pow_digest(raw: bytes) -> bytes:
    """blake3 of the envelope with the nonce field left out."""
    h = blake3.blake3(raw[:SIGNED_HEADER_SIZE])
    h.update(raw[HEADER_SIZE:])
    out: bytes = h.digest()
    return out


def signed_header(kind: Kind, tag: bytes, expiry: int) -> bytes:
    """The first 26 bytes of an envelope, known before sealing."""
    if len(tag) != 16:
        raise LocalProtocolError("tag must be 16 bytes")
    if not 0 <= expiry < 2**64:
        raise LocalProtocolError("expiry out of range")
    return _HEADER.pack(VERSION, int(kind), tag, expiry, 0)[:SIGNED_HEADER_SIZE]


def assemble(header26: bytes, ephemeral: bytes, ciphertext: bytes, nonce: int = 0) -> bytes:
    """Raw envelope bytes from its parts (nonce may be filled in later)."""
    if len(header26) != SIGNED_HEADER_SIZE or len(ephemeral) != 32:
        raise LocalProtocolError("bad envelope parts")
    raw = header26 + struct.pack(">Q", nonce) + ephemeral + ciphertext
    if len(raw) not in _VALID_SIZES:
        raise LocalProtocolError("ciphertext length is not a padding bucket")
    return raw


def with_nonce(raw: bytes, nonce: int) -> bytes:
    if not 0 <= nonce <= MAX_NONCE:
        raise LocalProtocolError("nonce out of range")
    return raw[:SIGNED_HEADER_SIZE] + struct.pack(">Q", nonce) + raw[HEADER_SIZE:]


def check_size(data: bytes) -> None:
    """The cheapest check: is the length one an envelope can have?"""
    n = len(data)
    if n > MAX_ENVELOPE_SIZE:
        raise OversizeError(f"envelope of {n} bytes exceeds {MAX_ENVELOPE_SIZE}")
    if n < MIN_ENVELOPE_SIZE:
        raise TruncatedError(f"envelope of {n} bytes is shorter than {MIN_ENVELOPE_SIZE}")
    if n not in _VALID_SIZES:
        raise NonCanonicalError(f"envelope length {n} is not a padding bucket size")


def parse_envelope(data: bytes) -> Envelope:
    """Decode without any cryptographic check (see checks.check_envelope)."""
    check_size(data)
    data = bytes(data)
    version, kind, tag, expiry, nonce = _HEADER.unpack_from(data)
    if version != VERSION:
        raise UnknownVersionError(f"envelope version {version} is not supported")
    try:
        k = Kind(kind)
    except ValueError:
        raise UnknownKindError(f"envelope kind {kind} is unknown") from None
    if nonce > MAX_NONCE:
        raise NonCanonicalError("proof-of-work nonce out of range")
    return Envelope(
        version=version,
        kind=k,
        tag=tag,
        expiry=expiry,
        nonce=nonce,
        ephemeral=data[HEADER_SIZE : HEADER_SIZE + BODY_PREFIX],
        ciphertext=data[HEADER_SIZE + BODY_PREFIX :],
        raw=data,
    )


def bucket_for(length: int) -> int:
    """The smallest padding bucket that holds ``length`` plaintext bytes."""
    for b in PAD_BUCKETS:
        if length <= b:
            return b
    raise LocalProtocolError(f"plaintext of {length} bytes exceeds the largest bucket")


def pad(plaintext: bytes) -> bytes:
    """ISO/IEC 7816-4 padding (0x80 then zeros) to the smallest bucket."""
    size = bucket_for(len(plaintext) + 1)
    return plaintext + b"\x80" + bytes(size - len(plaintext) - 1)


def unpad(padded: bytes) -> bytes:
    """Undo pad(); refuse any padding but the canonical one."""
    if len(padded) not in PAD_BUCKETS:
        raise NonCanonicalError(f"padded plaintext of {len(padded)} bytes is not a bucket size")
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        raise NonCanonicalError("plaintext padding is malformed")
    body = padded[: end - 1]
    if bucket_for(len(body) + 1) != len(padded):
        raise NonCanonicalError("plaintext is padded to a larger bucket than needed")
    return body


MAX_PLAINTEXT: Final = PAD_BUCKETS[-1] - 1
