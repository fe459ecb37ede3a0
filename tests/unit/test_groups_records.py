"""Private groups' records (flag 64, bridge.core.groups): read by hand as
docs/envelope.md §10 lays them out, round trips, signatures, and hostile bytes
refused with a protocol error only."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core import crypto
from bridge.core.envelope import Kind
from bridge.core.errors import (
    BadSignatureError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    RemoteProtocolError,
)
from bridge.core.groups import MAX_MEMBERS, GroupMessage, GroupState
from bridge.core.records import DirectMessage, parse_record

NOW_MS = 1_800_000_000 * 1000
GID = bytes(range(16))
SEEDS = [bytes([i]) * 32 for i in range(1, 40)]
KEYS = [crypto.ed25519_keypair(s) for s in SEEDS]  # (public, secret)
ALICE, BOB, CAROL = KEYS[0], KEYS[1], KEYS[2]


def state(version: int = 1, members: int = 3, signer: tuple[bytes, bytes] = ALICE,
          name: str = "friends") -> GroupState:
    return GroupState.make(signer[1], GID, version, name, signer[0],
                           frozenset(k[0] for k in KEYS[:members]))


def wire(record: GroupState | GroupMessage) -> bytes:
    return DirectMessage(NOW_MS, "", group=record).encode()


def test_a_state_read_by_hand() -> None:
    raw = wire(state(version=7))
    sent_at, flags, msgid_len, op = struct.unpack(">QBBB", raw[:11])
    assert (sent_at, flags, msgid_len, op) == (NOW_MS, 64, 0, 1)
    assert raw[11:27] == GID and struct.unpack(">I", raw[27:31]) == (7,)
    assert raw[31] == 7 and raw[32:39] == b"friends"
    assert raw[39:71] == ALICE[0]
    assert raw[71] == 3
    members = [raw[72 + 32 * i:104 + 32 * i] for i in range(3)]
    assert members == sorted(k[0] for k in KEYS[:3])
    signature = raw[168:232]
    assert len(raw) == 232
    crypto.verify(ALICE[0], b"ParanoIM 2026-12 group state\x00" + raw[11:168], signature)


def test_a_message_read_by_hand() -> None:
    msg = GroupMessage.make(BOB[1], BOB[0], GID, 2, NOW_MS, "m-1", "hé")
    raw = wire(msg)
    assert raw[9:11] == b"\x00\x02" and raw[11:27] == GID
    assert struct.unpack(">I", raw[27:31]) == (2,) and raw[31:63] == BOB[0]
    assert struct.unpack(">Q", raw[63:71]) == (NOW_MS,) and raw[71:75] == b"\x03m-1"
    signature, text = raw[75:139], raw[139:]
    assert text == "hé".encode()
    crypto.verify(BOB[0], b"ParanoIM 2026-12 group message\x00" + raw[11:71] + raw[71:75]
                  + text, signature)


@given(version=st.integers(1, 2**32 - 1), members=st.integers(1, MAX_MEMBERS),
       name=st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 64))
def test_states_round_trip_and_verify(version: int, members: int, name: str) -> None:
    s = state(version, members, name=name)
    back = parse_record(Kind.DIRECT, wire(s), version=2)
    assert isinstance(back, DirectMessage) and back.group == s
    assert wire(back.group) == wire(s)
    back.group.verify()


@given(text=st.text(min_size=1, max_size=200), msgid=st.text(min_size=1, max_size=16),
       sent=st.integers(0, 2**64 - 1))
def test_messages_round_trip_and_verify(text: str, msgid: str, sent: int) -> None:
    m = GroupMessage.make(CAROL[1], CAROL[0], GID, 3, sent, msgid, text)
    back = parse_record(Kind.DIRECT, wire(m), version=2)
    assert isinstance(back, DirectMessage) and back.group == m
    assert isinstance(back.group, GroupMessage)
    back.group.verify()


def test_a_forged_state_or_message_does_not_verify() -> None:
    forged = state(signer=BOB)  # Bob signs a state naming Alice as creator
    as_alice = GroupState(GID, 2, "friends", ALICE[0], forged.members, forged.signature)
    with pytest.raises(BadSignatureError):
        as_alice.verify()
    good = state()
    renamed = GroupState(GID, 1, "enemies", ALICE[0], good.members, good.signature)
    with pytest.raises(BadSignatureError):
        renamed.verify()
    m = GroupMessage.make(BOB[1], BOB[0], GID, 1, NOW_MS, "x", "hi")
    as_carol = GroupMessage(GID, 1, CAROL[0], NOW_MS, "x", "hi", m.signature)
    with pytest.raises(BadSignatureError):
        as_carol.verify()


def test_more_members_than_the_bound_cannot_be_made_nor_read() -> None:
    with pytest.raises(LocalProtocolError):
        state(members=MAX_MEMBERS + 1)
    raw = bytearray(wire(state(members=3)))
    raw[71] = 33  # the count, refused before any member is read
    with pytest.raises(MalformedError, match="1 to 32"):
        parse_record(Kind.DIRECT, bytes(raw), version=2)
    raw[71] = 0
    with pytest.raises(MalformedError):
        parse_record(Kind.DIRECT, bytes(raw), version=2)
    # a thousand members claimed: the count byte cannot even say it; 1000 keys after it
    huge = bytes(raw[:71]) + bytes([255]) + b"".join(k[0] for k in KEYS) * 26
    with pytest.raises(MalformedError):
        parse_record(Kind.DIRECT, huge, version=2)


def _refused(raw: bytes) -> type[Exception]:
    with pytest.raises(RemoteProtocolError) as info:
        parse_record(Kind.DIRECT, raw, version=2)
    return info.type


def test_hostile_shapes_are_refused() -> None:
    good = wire(state())
    assert _refused(good + b"\x00") is NonCanonicalError  # bytes after the signature
    assert _refused(good[:8] + bytes([64 | 1]) + good[9:]) is NonCanonicalError
    assert _refused(good[:9] + b"\x01x" + good[10:]) is NonCanonicalError  # a message id
    assert _refused(good[:10] + b"\x03" + good[11:]) is MalformedError  # unknown op
    members = good[72:168]
    swapped = good[:72] + members[32:64] + members[:32] + members[64:] + good[168:]
    assert _refused(swapped) is NonCanonicalError
    twice = good[:72] + members[:32] * 2 + members[64:] + good[168:]
    assert _refused(twice) is NonCanonicalError
    no_creator = good[:39] + KEYS[9][0] + good[71:]
    assert _refused(no_creator) is MalformedError
    weak = good[:39] + bytes(32) + good[71:]  # not a point of the curve
    assert _refused(weak) is MalformedError
    bad_name = good[:31] + b"\x07\xff" + good[33:]
    assert _refused(bad_name) is MalformedError
    assert _refused(good[:27] + bytes(4) + good[31:]) is MalformedError  # version 0
    msg = wire(GroupMessage.make(BOB[1], BOB[0], GID, 1, NOW_MS, "m", "hi"))
    assert _refused(msg[:-2]) is MalformedError  # no text
    assert _refused(msg[:-2] + b"\xc3") is MalformedError  # not UTF-8
    assert _refused(msg[:71] + b"\x00" + msg[73:]) is MalformedError  # no message id


@given(st.binary(max_size=400))
def test_any_bytes_after_flag_64_are_a_record_or_a_protocol_error(tail: bytes) -> None:
    raw = struct.pack(">QBB", NOW_MS, 64, 0) + tail
    try:
        back = parse_record(Kind.DIRECT, raw, version=2)
    except RemoteProtocolError:
        return
    assert isinstance(back, DirectMessage) and back.group is not None
    assert back.encode() == raw


def test_a_group_record_carries_nothing_else() -> None:
    with pytest.raises(LocalProtocolError):
        DirectMessage(NOW_MS, "text", group=state())
    with pytest.raises(LocalProtocolError):
        DirectMessage(NOW_MS, "", message_id="m", group=state())


VECTORS = json.loads((Path(__file__).resolve().parents[2] / "docs" / "vectors"
                      / "stamped.json").read_text("utf-8"))["groups"]


def test_the_published_vectors_parse_verify_and_refuse_as_recorded() -> None:
    alice = bytes.fromhex(VECTORS["signers"]["alice"])
    for v in VECTORS["records"]:
        raw = bytes.fromhex(v["record"])
        back = parse_record(Kind.DIRECT, raw, version=2)
        assert isinstance(back, DirectMessage) and back.group is not None
        back.group.verify()
        assert back.encode() == raw
        if isinstance(back.group, GroupState):
            assert back.group.creator == alice
    for v in VECTORS["refused"]:
        with pytest.raises(RemoteProtocolError) as info:
            parse_record(Kind.DIRECT, bytes.fromhex(v["record"]), version=2)
        assert info.type.__name__ == v["error"], v["case"]
    forged = parse_record(Kind.DIRECT, bytes.fromhex(VECTORS["forged"]["record"]), version=2)
    assert isinstance(forged, DirectMessage) and forged.group is not None
    with pytest.raises(BadSignatureError):
        forged.group.verify()
