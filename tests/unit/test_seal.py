"""Sealing and opening: every kind round-trips; every attack has its own error."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import crypto, tags
from bridge.core.envelope import Kind, parse_envelope
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    ExpiredError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    ReaddressedError,
    TruncatedError,
    WeakKeyError,
)
from bridge.core.identity import Identity, make_prekey, verified_prekey
from bridge.core.records import (
    Announcement,
    ChatState,
    DirectMessage,
    Receipt,
    RoomMessage,
    parse_record,
)
from bridge.core.seal import MAX_PAYLOAD, open_envelope, seal, seal_inner, sign_inner

NOW = 1_800_000_000
ALICE = Identity.from_seed(b"A" * 32)
BOB = Identity.from_seed(b"B" * 32)
CAROL = Identity.from_seed(b"C" * 32)
# Low-order X25519 points (Curve25519 u-coordinates).
LOW_ORDER_X25519 = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    (2**255 - 19 - 1).to_bytes(32, "little"),
]


def _seal(payload: bytes, *, sender: Identity = ALICE, to: Identity = BOB,
          kex: bytes | None = None, kind: Kind = Kind.DIRECT, eph: bytes | None = None) -> bytes:
    return seal(sender_secret_key=sender.secret_key, sender=sender.public, recipient=to.public,
                kex_public=kex or to.x25519_public, kind=kind,
                tag=tags.address_tag(to.public, tags.epoch_of(NOW)), expiry=NOW + 3600,
                payload=payload, ephemeral_secret=eph or os.urandom(32))


def test_direct_round_trip_proves_sender() -> None:
    msg = DirectMessage(NOW * 1000, "hi Bob ✓", receipt_wanted=True, message_id="m1")
    env = parse_envelope(_seal(msg.encode()))
    opened = open_envelope(env, BOB.public, [BOB.x25519_secret])
    assert opened.sender == ALICE.public and opened.recipient == BOB.public
    assert DirectMessage.parse(opened.payload) == msg
    # non-repudiation: anyone can check the signature over the revealed bytes
    crypto.verify(ALICE.public, opened.proof_message(env), opened.signature)


def test_relay_sees_no_sender() -> None:
    raw = _seal(b"payload")
    assert ALICE.public not in raw and BOB.public not in raw


def test_wrong_recipient_cannot_open() -> None:
    env = parse_envelope(_seal(b"for bob"))
    with pytest.raises(DecryptionError):
        open_envelope(env, CAROL.public, [CAROL.x25519_secret])


def test_readdressed_inner_record_is_refused() -> None:
    """Bob takes Alice's signed record and seals it to Carol as if Alice wrote to her."""
    eph = os.urandom(32)
    header = _seal(b"x")[:26]
    inner = sign_inner(ALICE.secret_key, ALICE.public, BOB.public, header,
                       crypto.x25519_public(eph), b"I owe you 100")
    raw = seal_inner(inner, header, eph, CAROL.x25519_public)
    with pytest.raises(ReaddressedError):
        open_envelope(parse_envelope(raw), CAROL.public, [CAROL.x25519_secret])
    # and rewriting the stated recipient breaks the signature instead
    forged = inner[:32] + CAROL.public + inner[64:]
    raw = seal_inner(forged, header, eph, CAROL.x25519_public)
    with pytest.raises(BadSignatureError):
        open_envelope(parse_envelope(raw), CAROL.public, [CAROL.x25519_secret])


def test_tampered_signature_is_refused() -> None:
    eph = os.urandom(32)
    header = _seal(b"x")[:26]
    inner = bytearray(sign_inner(ALICE.secret_key, ALICE.public, BOB.public, header,
                                 crypto.x25519_public(eph), b"text"))
    inner[64 + 5] ^= 1
    raw = seal_inner(bytes(inner), header, eph, BOB.x25519_public)
    with pytest.raises(BadSignatureError):
        open_envelope(parse_envelope(raw), BOB.public, [BOB.x25519_secret])


def test_every_flipped_bit_fails_to_open() -> None:
    """Without the PoW check in front, the AEAD (which covers header and
    ephemeral key as associated data) refuses every single-bit change."""
    raw = _seal(b"tamper me")
    for i in range(len(raw) * 8):
        if 26 * 8 <= i < 34 * 8:
            continue  # the nonce is outside the AEAD; the PoW check covers it
        flipped = bytearray(raw)
        flipped[i // 8] ^= 1 << (i % 8)
        try:
            env = parse_envelope(bytes(flipped))
        except MalformedError:
            continue
        with pytest.raises((DecryptionError, WeakKeyError)):
            open_envelope(env, BOB.public, [BOB.x25519_secret])


@pytest.mark.parametrize("point", LOW_ORDER_X25519)
def test_low_order_points_refused_both_ways(point: bytes) -> None:
    with pytest.raises(WeakKeyError):
        _seal(b"x", kex=point)
    raw = _seal(b"x")
    bad = raw[:34] + point + raw[66:]
    with pytest.raises(WeakKeyError):
        open_envelope(parse_envelope(bad), BOB.public, [BOB.x25519_secret])


def test_prekeys_rotate_and_deleted_prekeys_cannot_open() -> None:
    old_secret, new_secret = os.urandom(32), os.urandom(32)
    old = make_prekey(BOB, old_secret, NOW + 100)
    new = make_prekey(BOB, new_secret, NOW + 7 * 86400)
    kex = verified_prekey(BOB.public, new, NOW)
    env = parse_envelope(_seal(b"to the new prekey", kex=kex))
    opened = open_envelope(env, BOB.public, [old_secret, new_secret, BOB.x25519_secret])
    assert opened.key_index == 1
    # after rotation the old private key is deleted; an envelope sealed to it is unreadable
    env_old = parse_envelope(_seal(b"to the old prekey", kex=old.public))
    with pytest.raises(DecryptionError):
        open_envelope(env_old, BOB.public, [new_secret, BOB.x25519_secret])
    with pytest.raises(ExpiredError):
        verified_prekey(BOB.public, old, NOW + 100)
    with pytest.raises(BadSignatureError):
        verified_prekey(CAROL.public, new, NOW)


def test_room_and_announcement_keys() -> None:
    room_secret = tags.room_secret("public")
    room_pub = crypto.x25519_public(room_secret)
    msg = RoomMessage(NOW * 1000, "public", "alice", "hello room")
    raw = seal(sender_secret_key=ALICE.secret_key, sender=ALICE.public, recipient=room_pub,
               kex_public=room_pub, kind=Kind.ROOM, tag=tags.room_tag(room_pub, 1),
               expiry=NOW + 60, payload=msg.encode(), ephemeral_secret=os.urandom(32))
    opened = open_envelope(parse_envelope(raw), room_pub, [tags.room_secret("public")])
    assert RoomMessage.parse(opened.payload) == msg
    with pytest.raises(DecryptionError):
        open_envelope(parse_envelope(raw), room_pub, [tags.room_secret("other")])


def test_pair_secret_is_symmetric_and_private() -> None:
    ab = tags.pair_secret(ALICE.x25519_secret, ALICE.public, BOB.public)
    ba = tags.pair_secret(BOB.x25519_secret, BOB.public, ALICE.public)
    ac = tags.pair_secret(ALICE.x25519_secret, ALICE.public, CAROL.public)
    assert ab == ba != ac
    assert tags.pair_tag(ab, 5) != tags.pair_tag(ab, 6)


def test_payload_too_large_is_refused_before_sealing() -> None:
    _seal(b"x" * MAX_PAYLOAD)
    with pytest.raises(Exception, match="exceeds"):
        _seal(b"x" * (MAX_PAYLOAD + 1))


texts = st.text(max_size=200)
short = st.text(max_size=16).filter(lambda s: len(s.encode()) <= 64)


@given(st.integers(0, 2**64 - 1), texts, st.booleans(), short)
@settings(max_examples=100)
def test_direct_record_round_trip(t: int, text: str, receipt: bool, msgid: str) -> None:
    rec = DirectMessage(t, text, receipt, msgid)
    assert DirectMessage.parse(rec.encode()) == rec


@given(st.integers(0, 2**64 - 1), st.sampled_from(list(ChatState)))
@settings(max_examples=50)
def test_chat_state_record_round_trip(t: int, state: ChatState) -> None:
    rec = DirectMessage.state(t, state)
    data = rec.encode()
    assert data == t.to_bytes(8, "big") + bytes([4, 0, state])  # flags 4, no id, the code
    assert parse_record(Kind.DIRECT, data) == rec
    assert rec.text == "" and not rec.receipt_wanted and rec.chat_state is state
    assert ChatState.from_element(state.element) is state


def test_chat_state_record_rejections() -> None:
    good = DirectMessage.state(1, ChatState.COMPOSING).encode()
    head = good[:8]
    with pytest.raises(MalformedError, match="unknown chat state"):
        DirectMessage.parse(head + b"\x04\x00\x06")
    with pytest.raises(MalformedError, match="unknown chat state"):
        DirectMessage.parse(head + b"\x04\x00\x00")
    with pytest.raises(NonCanonicalError, match="no text"):
        DirectMessage.parse(good + "typing…".encode())
    with pytest.raises(NonCanonicalError, match="no message id"):
        DirectMessage.parse(head + b"\x04\x02m1\x02")
    for flags in (5, 6, 7, 0x0C):  # with a receipt, a prekey, both, an unknown bit
        with pytest.raises(NonCanonicalError, match="flag"):
            DirectMessage.parse(head + bytes([flags]) + good[9:])
    with pytest.raises(TruncatedError):
        DirectMessage.parse(good[:-1])
    # the encoder refuses what the parser refuses
    for bad in ({"text": "hi"}, {"receipt_wanted": True}, {"message_id": "m1"},
                {"prekey": make_prekey(BOB, bytes(32), NOW + 1000)}):
        with pytest.raises(LocalProtocolError):
            DirectMessage(1, **{"text": "", **bad}, chat_state=ChatState.PAUSED)
    with pytest.raises(LocalProtocolError):
        ChatState.from_element("typing")


def test_chat_state_seals_and_opens() -> None:
    rec = DirectMessage.state(NOW * 1000, ChatState.GONE)
    env = parse_envelope(_seal(rec.encode()))
    opened = open_envelope(env, BOB.public, [BOB.x25519_secret])
    assert parse_record(Kind.DIRECT, opened.payload) == rec


@given(st.integers(0, 2**64 - 1), short, short, texts)
@settings(max_examples=100)
def test_room_record_round_trip(t: int, room: str, nick: str, text: str) -> None:
    rec = RoomMessage(t, room, nick, text)
    assert RoomMessage.parse(rec.encode()) == rec


@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), short), min_size=1, max_size=64))
@settings(max_examples=50)
def test_receipt_round_trip(acked: list[tuple[bytes, str]]) -> None:
    rec = Receipt(tuple(acked))
    assert Receipt.parse(rec.encode()) == rec


def test_announcement_round_trip_and_rejections() -> None:
    pk = make_prekey(BOB, os.urandom(32), NOW + 1000)
    ann = Announcement(NOW, (pk,), "bob", "http://abc.onion:45069")
    data = ann.encode()
    assert Announcement.parse(data) == ann
    with pytest.raises(NonCanonicalError, match="trailing"):
        Announcement.parse(data + b"\x00")
    with pytest.raises(TruncatedError):
        Announcement.parse(data[:-1])
    with pytest.raises(MalformedError):
        Announcement.parse(data[:-105] + b"\x00")  # zero prekeys


def test_record_rejections() -> None:
    good = DirectMessage(1, "hi").encode()
    with pytest.raises(NonCanonicalError, match="flag"):
        DirectMessage.parse(good[:8] + b"\x80" + good[9:])
    with pytest.raises(MalformedError, match="UTF-8"):
        DirectMessage.parse(good + b"\xff")
    with pytest.raises(TruncatedError):
        parse_record(Kind.RECEIPT, b"\x02" + bytes(32))
    with pytest.raises(MalformedError):
        parse_record(Kind.RECEIPT, b"\x00")
