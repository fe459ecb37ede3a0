"""The envelope: the one record that travels between nodes.

Canonical binary layout, version 1 (all integers big-endian; version 2 below):

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

Version 2 carries a stamp (``stamp.py``, docs/stamps.md): the proof of work is
over a one-time key minted before the text was written, and that key signs the
envelope. The first 34 bytes are as in version 1, then

    34   32    stamp key        Ed25519 public key, one envelope per key
    66   64    stamp signature  over every byte but the nonce and this field
    130  n+16  body             n one of PAD_BUCKETS; its inside is the session
                                layer's (docs/sessions.md)

    id         = stamp.stamp_id(stamp key)
    pow digest = stamp.stamp_digest(stamp key, n, expiry)
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import blake3

from bridge.core import crypto, stamp
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
VERSION_STAMPED: Final = stamp.FORMAT_VERSION  # 2
HEADER_SIZE: Final = 34  # version .. nonce
SIGNED_HEADER_SIZE: Final = 26  # version .. expiry: what the inner signature covers
BODY_PREFIX: Final = 32  # ephemeral key
STAMP_KEY_END: Final = HEADER_SIZE + 32
STAMPED_FIXED: Final = stamp.FIXED_SIZE  # 130: header, nonce, stamp key, stamp signature
PAD_BUCKETS: Final = stamp.BUCKETS  # (256, 1024, 4096, 16384, 65536)
_SIZES: Final = {
    VERSION: frozenset(HEADER_SIZE + BODY_PREFIX + b + crypto.AEAD_TAG_SIZE for b in PAD_BUCKETS),
    VERSION_STAMPED: frozenset(stamp.envelope_size(b) for b in PAD_BUCKETS),
}
MIN_ENVELOPE_SIZE: Final = min(min(v) for v in _SIZES.values())  # 338
MAX_ENVELOPE_SIZE: Final = max(max(v) for v in _SIZES.values())  # 65682
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
    ephemeral: bytes  # version 1; empty in version 2
    ciphertext: bytes  # version 1: the AEAD ciphertext; version 2: the body
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

    @property
    def stamp_key(self) -> bytes:
        """Version 2: the one-time key the proof of work is over (empty in version 1)."""
        return self.raw[HEADER_SIZE:STAMP_KEY_END] if self.version == VERSION_STAMPED else b""

    @property
    def stamp_signature(self) -> bytes:
        return self.raw[STAMP_KEY_END:STAMPED_FIXED] if self.version == VERSION_STAMPED else b""


def envelope_id(raw: bytes) -> bytes:
    """Version 1: the id names the content, not the proof of work (the nonce is left
    out, so re-stamping a stored envelope with another nonce cannot make it look new).
    Version 2: the id names the stamp, so every store keeps one envelope per stamp."""
    if raw[0] == VERSION_STAMPED:
        return stamp.stamp_id(raw[HEADER_SIZE:STAMP_KEY_END])
    return crypto.derive(crypto.CTX_ENVELOPE_ID, raw[:SIGNED_HEADER_SIZE] + raw[HEADER_SIZE:])


def pow_digest(raw: bytes) -> bytes:
    """What the nonce proves work for. Version 1: blake3 of the envelope with the
    nonce field left out; version 2: the stamp digest (size class, expiry, key)."""
    if raw[0] == VERSION_STAMPED:
        expiry = int.from_bytes(raw[18:SIGNED_HEADER_SIZE], "big")
        return stamp.stamp_digest(raw[HEADER_SIZE:STAMP_KEY_END],
                                  len(raw) - STAMPED_FIXED - crypto.AEAD_TAG_SIZE, expiry)
    h = blake3.blake3(raw[:SIGNED_HEADER_SIZE])
    h.update(raw[HEADER_SIZE:])
    out: bytes = h.digest()
    return out


def stamp_message(raw: bytes) -> bytes:
    """Version 2: what the stamp signature covers — every byte but the nonce and the
    signature itself."""
    return raw[:SIGNED_HEADER_SIZE] + raw[HEADER_SIZE:STAMP_KEY_END] + raw[STAMPED_FIXED:]


def signed_header(kind: Kind, tag: bytes, expiry: int, version: int = VERSION) -> bytes:
    """The first 26 bytes of an envelope, known before sealing."""
    if len(tag) != 16:
        raise LocalProtocolError("tag must be 16 bytes")
    if not 0 <= expiry < 2**64:
        raise LocalProtocolError("expiry out of range")
    if version not in _SIZES:
        raise LocalProtocolError(f"no envelope version {version}")
    return _HEADER.pack(version, int(kind), tag, expiry, 0)[:SIGNED_HEADER_SIZE]


def assemble(header26: bytes, ephemeral: bytes, ciphertext: bytes, nonce: int = 0) -> bytes:
    """Raw envelope bytes from its parts (nonce may be filled in later)."""
    if len(header26) != SIGNED_HEADER_SIZE or header26[0] != VERSION or len(ephemeral) != 32:
        raise LocalProtocolError("bad envelope parts")
    raw = header26 + struct.pack(">Q", nonce) + ephemeral + ciphertext
    if len(raw) not in _SIZES[VERSION]:
        raise LocalProtocolError("ciphertext length is not a padding bucket")
    return raw


def assemble_stamped(header26: bytes, minted: stamp.Stamp, body: bytes) -> bytes:
    """A version-2 envelope: the header, the stamp's nonce and key, the body, and the
    stamp signature over them. The body must fill the stamp's size class."""
    if len(header26) != SIGNED_HEADER_SIZE or header26[0] != VERSION_STAMPED:
        raise LocalProtocolError("bad envelope parts")
    if int.from_bytes(header26[18:], "big") != minted.expiry:
        raise LocalProtocolError("the envelope's expiry is not its stamp's")
    if len(body) != minted.bucket + crypto.AEAD_TAG_SIZE:
        raise LocalProtocolError("the body does not fill the stamp's size class")
    unsigned = header26 + struct.pack(">Q", minted.nonce) + minted.public + bytes(64) + body
    signature = minted.sign(stamp_message(unsigned))
    return unsigned[:STAMP_KEY_END] + signature + body


def with_nonce(raw: bytes, nonce: int) -> bytes:
    if not 0 <= nonce <= MAX_NONCE:
        raise LocalProtocolError("nonce out of range")
    return raw[:SIGNED_HEADER_SIZE] + struct.pack(">Q", nonce) + raw[HEADER_SIZE:]


def check_size(data: bytes) -> None:
    """The cheapest check: is the length one an envelope of its version can have?"""
    n = len(data)
    if n > MAX_ENVELOPE_SIZE:
        raise OversizeError(f"envelope of {n} bytes exceeds {MAX_ENVELOPE_SIZE}")
    if n < MIN_ENVELOPE_SIZE:
        raise TruncatedError(f"envelope of {n} bytes is shorter than {MIN_ENVELOPE_SIZE}")
    sizes = _SIZES.get(data[0])
    if sizes is None:
        raise UnknownVersionError(f"envelope version {data[0]} is not supported")
    if n not in sizes:
        raise NonCanonicalError(f"envelope length {n} is not a padding bucket size")


def parse_envelope(data: bytes) -> Envelope:
    """Decode without any cryptographic check (see checks.check_envelope)."""
    check_size(data)
    data = bytes(data)
    version, kind, tag, expiry, nonce = _HEADER.unpack_from(data)
    try:
        k = Kind(kind)
    except ValueError:
        raise UnknownKindError(f"envelope kind {kind} is unknown") from None
    if nonce > MAX_NONCE:
        raise NonCanonicalError("proof-of-work nonce out of range")
    stamped = version == VERSION_STAMPED
    return Envelope(
        version=version,
        kind=k,
        tag=tag,
        expiry=expiry,
        nonce=nonce,
        ephemeral=b"" if stamped else data[HEADER_SIZE : HEADER_SIZE + BODY_PREFIX],
        ciphertext=data[STAMPED_FIXED if stamped else HEADER_SIZE + BODY_PREFIX :],
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
