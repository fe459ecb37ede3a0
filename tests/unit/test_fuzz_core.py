"""Hypothesis fuzzing of opening and of the record parsers (the envelope parser's own
fuzz test is in test_envelope.py; the atheris target is tests/fuzz/fuzz_envelope.py,
whose ``one_input`` runs here too)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bridge.core import envelope as E
from bridge.core import seal
from bridge.core.errors import (
    LocalProtocolError,
    NonCanonicalError,
    RemoteProtocolError,
    WeakKeyError,
)
from bridge.core.identity import SignedPrekey
from bridge.core.records import DirectMessage, parse_record
from tests.fuzz.fuzz_envelope import (
    ALICE,
    BOB,
    BOB_KEYS,
    EPHEMERAL,
    HEADER,
    one_input,
    seal_padded,
    seed_inputs,
)

SEEDS = seed_inputs()
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid input with a few bit flips, truncations, insertions and deletions."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:
            del data[at : at + draw(st.integers(1, 16))]
    return bytes(data)


@given(st.integers(0, 4), st.binary(max_size=1500))
@FAST
def test_fuzz_target_on_random_bytes(mode: int, rest: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        one_input(bytes([mode]) + rest)


@given(mutated(st.sampled_from(SEEDS)))
@FAST
def test_fuzz_target_on_mutated_vectors(data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        one_input(data)


@given(st.binary(max_size=600))
@FAST
def test_open_arbitrary_plaintext_under_valid_keys(padded: bytes) -> None:
    """The AEAD opens, so unpad, the inner split, the recipient and sender checks
    and the signature see arbitrary bytes: only protocol errors may come out."""
    env = seal_padded(padded)
    with contextlib.suppress(RemoteProtocolError):
        seal.open_envelope(env, BOB.public, BOB_KEYS)


@given(st.binary(min_size=64, max_size=64), st.binary(max_size=300))
@FAST
def test_forged_signature_is_a_signature_error(sig: bytes, payload: bytes) -> None:
    inner = ALICE.public + BOB.public + sig + payload
    env = seal_padded(E.pad(inner))
    with pytest.raises(RemoteProtocolError) as info:
        seal.open_envelope(env, BOB.public, BOB_KEYS)
    assert type(info.value).__name__ == "BadSignatureError"


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=200))
@FAST
def test_random_sender_key_is_refused(sender: bytes, payload: bytes) -> None:
    inner = sender + BOB.public + bytes(64) + payload
    env = seal_padded(E.pad(inner))
    with pytest.raises(RemoteProtocolError):
        seal.open_envelope(env, BOB.public, BOB_KEYS)


@given(st.sampled_from(list(E.Kind)), st.binary(max_size=700))
@FAST
def test_record_parsers_on_random_bytes(kind: E.Kind, data: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        parse_record(kind, data)


def _record_seeds() -> list[tuple[E.Kind, bytes]]:
    out = []
    for data in SEEDS:
        if data[0] == 3:  # mode 3 carries a kind byte and a record payload
            out.append((E.Kind(1 + data[1] % 4), data[2:]))
    return out


RECORD_SEEDS = _record_seeds()


@given(st.sampled_from(RECORD_SEEDS).flatmap(
    lambda kd: st.tuples(st.just(kd[0]), mutated(st.just(kd[1])))))
@FAST
def test_mutated_records_parse_canonically_or_fail_cleanly(case: tuple[E.Kind, bytes]) -> None:
    """A mutated record either fails with a protocol error or parses to a record
    whose encoding is exactly the input (one encoding per record)."""
    kind, data = case
    try:
        rec = parse_record(kind, data)
    except RemoteProtocolError:
        return
    try:
        encoded = rec.encode()
    except LocalProtocolError:
        assume(False)  # encoders refuse what parsers refuse; nothing should get here
        return
    assert encoded == data


@given(st.binary(max_size=120), st.integers(0, 2**64 - 1))
@FAST
def test_prekey_parse_and_verify_on_random_bytes(data: bytes, now: int) -> None:
    with contextlib.suppress(RemoteProtocolError):
        SignedPrekey.parse(data).verify(BOB.public, now)


def test_parsers_accept_only_what_encoders_write() -> None:
    data = struct.pack(">QB", 1, 0) + bytes([65]) + b"m" * 65 + b"text"
    with pytest.raises(NonCanonicalError, match="exceeds 64"):
        DirectMessage.parse(data)
    ok = struct.pack(">QB", 1, 0) + bytes([64]) + b"m" * 64 + b"text"
    assert DirectMessage.parse(ok).encode() == ok


@given(st.binary(max_size=300))
@settings(max_examples=50, deadline=None)
def test_fast_paths_of_open_agree_with_the_plain_path(payload: bytes) -> None:
    """(secret, public) pairs and the cache of checked sender keys change no outcome."""
    inner = seal.sign_inner(ALICE.secret_key, ALICE.public, BOB.public, HEADER, EPHEMERAL,
                            payload)
    env = seal_padded(E.pad(inner))
    a = seal.open_envelope(env, BOB.public, [BOB.x25519_secret])
    b = seal.open_envelope(env, BOB.public, [seal.kex_key(bytes(32)), *BOB_KEYS])
    assert (a.payload, a.sender, a.signature) == (b.payload, b.sender, b.signature)
    assert (a.key_index, b.key_index) == (0, 1)


def test_sender_key_cache_keeps_refusing_weak_keys() -> None:
    identity_point = (1).to_bytes(32, "little")
    env = seal_padded(E.pad(identity_point + BOB.public + bytes(64) + b"x"))
    for _ in range(2):  # a failure is never cached as a success
        with pytest.raises(WeakKeyError):
            seal.open_envelope(env, BOB.public, BOB_KEYS)
