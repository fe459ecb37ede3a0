"""Addresses: the whole Ed25519 public key, Tor-v3 style.

    address = base32(pubkey[32] ‖ checksum[2] ‖ version[1])   -> 56 lowercase chars
    checksum = blake3-derive(CTX_ADDRESS_CHECKSUM, pubkey ‖ version)[:2]

35 bytes are exactly 280 bits = 56 base32 characters, so there is no padding
and exactly one spelling of each address (after lowercasing). Decoding reports
the first thing wrong, in the order a person would want to hear it: length,
alphabet, checksum (a typo), version (a newer client), then the key itself.
"""

from __future__ import annotations

import base64
import functools
from typing import Final

from bridge.core import crypto
from bridge.core.errors import (
    AddressAlphabetError,
    AddressChecksumError,
    AddressLengthError,
    AddressVersionError,
    BadAddressError,
    WeakKeyError,
)

ADDRESS_VERSION: Final = 1
ADDRESS_LENGTH: Final = 56
BASE32_ALPHABET: Final = "abcdefghijklmnopqrstuvwxyz234567"
_ALPHABET_SET: Final = frozenset(BASE32_ALPHABET)


def _checksum(pub: bytes, version: int) -> bytes:
    return crypto.derive(crypto.CTX_ADDRESS_CHECKSUM, pub + bytes([version]), 2)


@functools.lru_cache(maxsize=4096)  # every envelope names its sender and recipient
def encode_address(pub: bytes) -> str:
    crypto.check_ed25519_public(pub)
    raw = pub + _checksum(pub, ADDRESS_VERSION) + bytes([ADDRESS_VERSION])
    return base64.b32encode(raw).decode("ascii").lower()


def normalize(text: str) -> str:
    """What a person pasted, without surrounding space or case differences."""
    return text.strip().lower()


def decode_address(text: str) -> bytes:
    """The public key inside ``text``, or a BadAddressError saying what is wrong."""
    if not isinstance(text, str):
        raise BadAddressError("an address must be text")
    return _decode(text)


@functools.lru_cache(maxsize=4096)  # only addresses that decode are remembered
def _decode(text: str) -> bytes:
    s = normalize(text)
    if len(s) != ADDRESS_LENGTH:
        raise AddressLengthError(
            f"an address has {ADDRESS_LENGTH} characters; this one has {len(s)}"
        )
    bad = sorted({c for c in s if c not in _ALPHABET_SET})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise AddressAlphabetError(
            f"an address uses only the letters a-z and digits 2-7; found {shown}"
        )
    raw = base64.b32decode(s.upper())
    pub, check, version = raw[:32], raw[32:34], raw[34]
    if not crypto.equal(check, _checksum(pub, version)):
        raise AddressChecksumError(
            "the address checksum does not match: a character was mistyped or lost"
        )
    if version != ADDRESS_VERSION:
        raise AddressVersionError(
            f"address version {version} is not supported (this program knows version "
            f"{ADDRESS_VERSION}); the contact may use a newer ParanoIM"
        )
    try:
        crypto.check_ed25519_public(pub)
    except WeakKeyError as exc:
        raise BadAddressError(f"the address holds an unusable key: {exc}") from exc
    return pub


def is_address(text: str) -> bool:
    try:
        decode_address(text)
    except BadAddressError:
        return False
    return True


def fingerprint(pub: bytes) -> str:
    """A short, hash-derived string for comparing keys by eye or voice.

    Not the address prefix: vanity mining makes a prefix cheap to imitate; 80
    bits of a hash are not.
    """
    digest = crypto.derive(crypto.CTX_FINGERPRINT, pub, 10)
    s = base64.b32encode(digest).decode("ascii").lower()
    return "-".join(s[i : i + 4] for i in range(0, 16, 4))
