"""Addresses: round trips, every rejection with its own error, weak keys."""

from __future__ import annotations

import base64

import nacl.bindings as sodium
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import address, crypto
from bridge.core.errors import (
    AddressAlphabetError,
    AddressChecksumError,
    AddressLengthError,
    AddressVersionError,
    BadAddressError,
    UserError,
    WeakKeyError,
)
from bridge.core.identity import Identity

# Small-order points of edwards25519 (canonical encodings) and a non-canonical y.
SMALL_ORDER = [
    bytes(32),  # (0, 0) is not on the curve; still refused
    (1).to_bytes(32, "little"),  # identity point
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
]
NON_CANONICAL = (2**255 - 19 + 1).to_bytes(32, "little")  # y = p + 1 ≡ 1 (identity) but ≥ p


def _raw_address(pub: bytes, version: int = 1, checksum: bytes | None = None) -> str:
    check = checksum if checksum is not None else crypto.derive(
        crypto.CTX_ADDRESS_CHECKSUM, pub + bytes([version]), 2)
    return base64.b32encode(pub + check + bytes([version])).decode().lower()


@given(st.binary(min_size=32, max_size=32))
def test_round_trip_for_any_seed(seed: bytes) -> None:
    ident = Identity.from_seed(seed)
    a = ident.address
    assert len(a) == 56 and a == a.lower()
    assert address.decode_address(a) == ident.public
    # a person may paste it in capitals or with spaces around it
    assert address.decode_address(f"  {a.upper()}\n") == ident.public


def test_wrong_length() -> None:
    a = Identity.from_seed(bytes(32)).address
    with pytest.raises(AddressLengthError, match="56 characters; this one has 55"):
        address.decode_address(a[:-1])
    with pytest.raises(AddressLengthError):
        address.decode_address(a + "a")


def test_wrong_alphabet() -> None:
    a = Identity.from_seed(bytes(32)).address
    with pytest.raises(AddressAlphabetError, match="'1'"):
        address.decode_address("1" + a[1:])


def test_every_single_character_typo_is_caught() -> None:
    a = Identity.from_seed(bytes(31) + b"\x07").address
    caught = 0
    for i in range(56):
        for c in "ab":
            if a[i] == c:
                continue
            typo = a[:i] + c + a[i + 1 :]
            with pytest.raises(BadAddressError):
                address.decode_address(typo)
            caught += 1
    assert caught >= 100


def test_checksum_error_is_a_user_error_with_advice() -> None:
    pub = Identity.from_seed(bytes(32)).public
    bad = _raw_address(pub, checksum=b"\x00\x00")
    with pytest.raises(AddressChecksumError, match="mistyped") as info:
        address.decode_address(bad)
    assert isinstance(info.value, UserError)


def test_unknown_version() -> None:
    pub = Identity.from_seed(bytes(32)).public
    with pytest.raises(AddressVersionError, match="version 2"):
        address.decode_address(_raw_address(pub, version=2))


@pytest.mark.parametrize("pub", [*SMALL_ORDER, NON_CANONICAL])
def test_small_order_and_non_canonical_keys_refused(pub: bytes) -> None:
    with pytest.raises(BadAddressError, match="unusable key"):
        address.decode_address(_raw_address(pub))
    with pytest.raises(WeakKeyError):
        address.encode_address(pub)


def test_small_order_list_really_is_small_order() -> None:
    # guard the fixture itself: libsodium agrees these are not valid points
    for pub in SMALL_ORDER[1:]:
        assert not sodium.crypto_core_ed25519_is_valid_point(pub)


def test_fingerprint_is_short_stable_and_not_the_prefix() -> None:
    ident = Identity.from_seed(bytes(32))
    fp = ident.fingerprint
    assert len(fp) == 19 and fp.count("-") == 3
    assert fp == address.fingerprint(ident.public)
    assert fp.replace("-", "")[:8] != ident.address[:8]
    assert Identity.from_seed(b"\x01" * 32).fingerprint != fp
