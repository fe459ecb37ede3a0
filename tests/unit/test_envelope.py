"""Envelope codec and the stateless checks, each rejection with its own error."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import envelope as E
from bridge.core import pow
from bridge.core.checks import (
    MAX_CLOCK_SKEW,
    MAX_TTL,
    check_envelope,
    pow_bits_required,
    stamp_inline,
    work_needed,
)
from bridge.core.errors import (
    ExpiredError,
    FromFutureError,
    NonCanonicalError,
    OversizeError,
    RemoteProtocolError,
    TruncatedError,
    UnknownKindError,
    UnknownVersionError,
    WeakProofOfWorkError,
)
from tests.envelopes import make_envelope

NOW = 1_800_000_000


@pytest.fixture(scope="module")
def raw() -> bytes:
    return make_envelope(now=NOW, ttl=3600, base_bits=8)


def test_valid_envelope_passes_and_parses(raw: bytes) -> None:
    env = check_envelope(raw, now=NOW, base_bits=8)
    assert env.kind is E.Kind.DIRECT
    assert env.expiry == NOW + 3600
    assert env.size == len(raw) == E.HEADER_SIZE + 32 + 256 + 16
    assert env.id == E.envelope_id(raw) and len(env.id) == 32


def test_truncated_and_oversize(raw: bytes) -> None:
    with pytest.raises(TruncatedError):
        check_envelope(raw[:-1][: E.MIN_ENVELOPE_SIZE - 1], now=NOW)
    with pytest.raises(TruncatedError):
        check_envelope(b"", now=NOW)
    with pytest.raises(OversizeError):
        check_envelope(b"\x01" * (E.MAX_ENVELOPE_SIZE + 1), now=NOW)
    with pytest.raises(OversizeError):
        check_envelope(b"\x01" * 10_000_000, now=NOW)


def test_length_between_buckets_is_non_canonical(raw: bytes) -> None:
    with pytest.raises(NonCanonicalError, match="bucket"):
        check_envelope(raw + b"\x00", now=NOW)


def test_unknown_version_and_kind(raw: bytes) -> None:
    with pytest.raises(UnknownVersionError):
        check_envelope(b"\x03" + raw[1:], now=NOW)
    with pytest.raises(NonCanonicalError):  # version 2 has other lengths
        check_envelope(b"\x02" + raw[1:], now=NOW)
    with pytest.raises(UnknownKindError):
        check_envelope(raw[:1] + b"\x09" + raw[2:], now=NOW)


def test_nonce_out_of_range_is_non_canonical(raw: bytes) -> None:
    bad = raw[:26] + struct.pack(">Q", pow.MAX_NONCE + 1) + raw[34:]
    with pytest.raises(NonCanonicalError, match="nonce"):
        E.parse_envelope(bad)


def test_expired_and_from_the_future() -> None:
    raw = make_envelope(now=NOW, ttl=60, base_bits=4)
    check_envelope(raw, now=NOW + 59, base_bits=4)
    with pytest.raises(ExpiredError):
        check_envelope(raw, now=NOW + 60, base_bits=4)
    # an expiry beyond the longest lifetime plus the skew bound is refused
    far = make_envelope(now=NOW, ttl=MAX_TTL, base_bits=0)
    check_envelope(far, now=NOW, base_bits=0)
    with pytest.raises(FromFutureError):
        check_envelope(far, now=NOW - MAX_CLOCK_SKEW - 1, base_bits=0)


def test_weak_pow_refused(raw: bytes) -> None:
    digest, bits = work_needed(raw, now=NOW, base_bits=8)
    env = E.parse_envelope(raw)
    assert pow.work_bits(digest, env.nonce) >= bits
    # find a nonce that is one bit short and put it in
    n = 0
    while pow.work_bits(digest, n) >= bits:
        n += 1
    with pytest.raises(WeakProofOfWorkError, match=f"{bits} are required"):
        check_envelope(E.with_nonce(raw, n), now=NOW, base_bits=8)
    # and the same envelope is refused when a node asks for more work
    with pytest.raises(WeakProofOfWorkError):
        check_envelope(raw, now=NOW, base_bits=pow.work_bits(digest, env.nonce) + 1)


def test_every_flipped_bit_is_refused(raw: bytes) -> None:
    """Flip each bit of a valid envelope: the PoW (over every byte but the
    nonce) or the header checks refuse every one. 20 bits of work make a
    chance pass of a flipped envelope one in a million per flip."""
    strong = make_envelope(now=NOW, ttl=3600, base_bits=20)
    for i in range(len(strong) * 8):
        flipped = bytearray(strong)
        flipped[i // 8] ^= 1 << (i % 8)
        with pytest.raises(RemoteProtocolError):
            check_envelope(bytes(flipped), now=NOW, base_bits=20)


def test_pad_unpad_canonical() -> None:
    for n in (0, 1, 254, 255, 256, 1000, 65534):
        p = E.pad(b"x" * n)
        assert len(p) in E.PAD_BUCKETS and E.unpad(p) == b"x" * n
    with pytest.raises(NonCanonicalError):
        E.unpad(bytes(256))  # no 0x80 marker
    with pytest.raises(NonCanonicalError):
        E.unpad(b"x" * 10 + b"\x81" + bytes(245))
    with pytest.raises(NonCanonicalError, match="larger bucket"):
        E.unpad(b"x" * 10 + b"\x80" + bytes(1013))  # fits 256, padded to 1024


@given(st.binary(max_size=E.MAX_ENVELOPE_SIZE + 10))
@settings(max_examples=300)
def test_fuzz_parser_only_raises_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        check_envelope(data, now=NOW, base_bits=8)


@given(st.integers(0, 255), st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16),
       st.sampled_from(E.PAD_BUCKETS))
@settings(max_examples=200)
def test_fuzz_header_fields(kind: int, expiry: int, tag: bytes, bucket: int) -> None:
    data = struct.pack(">BB16sQQ", 1, kind, tag, expiry, 0) + bytes(32 + bucket + 16)
    try:
        env = E.parse_envelope(data)
    except RemoteProtocolError:
        assert kind not in {k.value for k in E.Kind}
        return
    assert env.raw == data and env.expiry == expiry and env.tag == tag


def test_stamp_inline_solves_required_bits() -> None:
    raw = make_envelope(now=NOW, ttl=7200, base_bits=6)
    digest, bits = work_needed(raw, now=NOW, base_bits=6)
    assert bits == 6 + 1  # 1 KiB unit × 2 hours → one more bit
    assert pow.work_bits(digest, E.parse_envelope(raw).nonce) >= bits
    restamped = stamp_inline(E.with_nonce(raw, 0), now=NOW, base_bits=6)
    check_envelope(restamped, now=NOW, base_bits=6)


@pytest.mark.parametrize("ttl", [3600, 2 * 86400, 2 * 86400 + 1, 5 * 86400, MAX_TTL])
def test_what_the_sender_solves_every_receiver_accepts(ttl: int) -> None:
    """work_needed (the outbox) asks at least what check_pow requires, over the skew window."""
    raw = make_envelope(now=NOW, ttl=ttl, base_bits=0)
    _digest, bits = work_needed(raw, now=NOW, base_bits=4)
    env = E.parse_envelope(raw)
    for behind in (-MAX_CLOCK_SKEW, 0, 1, MAX_CLOCK_SKEW):
        assert pow_bits_required(env, NOW + behind, 4) <= bits
    assert bits == pow.required_bits(env.size, ttl, 4)


def test_restamping_does_not_make_a_new_envelope(raw: bytes) -> None:
    """The id leaves the nonce out: redoing the work cannot make a stored
    envelope look new to stores or to the recipient."""
    env = E.parse_envelope(raw)
    digest, bits = work_needed(raw, now=NOW, base_bits=8)
    other = pow.solve_range(digest, bits, env.nonce + 1, 1 << 20)
    assert other is not None and other != env.nonce
    again = E.with_nonce(raw, other)
    check_envelope(again, now=NOW, base_bits=8)
    assert again != raw and E.parse_envelope(again).id == env.id
