"""Version-2 bodies end to end: a session's handshake message, the reply, the next
messages, replays and tampering; sealed bodies for rooms (core.body)."""

from __future__ import annotations

import pytest

from bridge.core import crypto, kem, tags
from bridge.core import envelope as E
from bridge.core.body import (
    FORM_HANDSHAKE,
    FORM_MESSAGE,
    handshake_of,
    open_handshake,
    open_sealed,
    open_session,
    seal_sealed,
    seal_session,
    sealed_bucket,
    session_bucket,
)
from bridge.core.checks import check_envelope
from bridge.core.envelope import Kind
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    SessionError,
    UnknownPrekeyError,
)
from bridge.core.handshake import HybridPrekey, initiate, make_hybrid_prekey
from bridge.core.identity import Identity
from bridge.core.sessions import Outcome, Peer, begin, initiator_session
from bridge.core.stamp import Stamp, envelope_size
from tests.stamp_support import distinct_bytes, mint_stamp

NOW = 1_800_000_000
BITS = 2
ALICE = Identity.from_seed(b"\xa1" * 32)
BOB = Identity.from_seed(b"\xb0" * 32)
CAROL = Identity.from_seed(b"\xc4" * 32)
BOB_X, BOB_KEM = b"\x21" * 32, b"\x22" * 64
PREKEY = make_hybrid_prekey(BOB, BOB_X, BOB_KEM, NOW + 7 * 86_400)
TAG = tags.address_tag(BOB.public, tags.epoch_of(NOW))
_rand = distinct_bytes


def _stamp(bucket: int) -> Stamp:
    return mint_stamp(bucket, now=NOW, bits=BITS)


def _lookup(prekey_id: bytes) -> tuple[HybridPrekey, bytes, bytes] | None:
    return (PREKEY, BOB_X, BOB_KEM) if prekey_id == PREKEY.id else None


def _alice_starts() -> Peer:
    hs = initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None, now=NOW,
                  ephemeral_secret=_rand(32), encapsulated=kem.encapsulate(PREKEY.kem))
    return begin(Peer(), initiator_session(hs, _rand(32)), NOW)


def _send(me: Identity, to: Identity, peer: Peer, text: bytes,
          kind: Kind = Kind.DIRECT) -> tuple[E.Envelope, Peer, bool]:
    handshake = peer.active is not None and peer.active.init is not None
    stamp = _stamp(session_bucket(len(text), handshake))
    raw, after, persist = seal_session(sender=me, recipient=to.public, kind=kind, tag=TAG,
                                       stamp=stamp, peer=peer, payload=text,
                                       ratchet_secret=_rand(32))
    return check_envelope(raw, now=NOW, base_bits=BITS), after, persist


def test_a_conversation_starts_with_a_handshake_and_goes_on_in_the_ratchet() -> None:
    alice = _alice_starts()
    first, alice, persist = _send(ALICE, BOB, alice, b"hello Bob")
    assert persist and first.size == envelope_size(4096)  # the block needs 4 KiB
    assert first.ciphertext[0] == FORM_HANDSHAKE and handshake_of(first) is not None
    got = open_handshake(first, BOB, _lookup, NOW, peer_for=lambda _k: Peer())
    assert (got.opened.sender, got.opened.payload, got.outcome) == (
        ALICE.public, b"hello Bob", Outcome.NEW)
    bob = got.peer
    second, alice, _ = _send(ALICE, BOB, alice, b"still no answer")
    assert second.ciphertext[0] == FORM_HANDSHAKE  # until Alice hears back
    again = open_handshake(second, BOB, _lookup, NOW, peer_for=lambda _k: bob)
    assert again.outcome is Outcome.SAME and again.opened.payload == b"still no answer"
    bob = again.peer

    reply, bob, persist = _send(BOB, ALICE, bob, b"yes", Kind.RECEIPT)
    assert persist and reply.ciphertext[0] == FORM_MESSAGE and reply.size == 402
    opened = open_session(reply, ALICE, alice, NOW)
    assert (opened.opened.sender, opened.opened.payload, opened.opened.kind) == (
        BOB.public, b"yes", Kind.RECEIPT)
    alice = opened.peer
    third, alice, _ = _send(ALICE, BOB, alice, b"good")
    assert third.ciphertext[0] == FORM_MESSAGE and third.size == 402  # confirmed: no block
    assert open_session(third, BOB, bob, NOW).opened.payload == b"good"


def test_a_handshake_of_a_session_held_needs_no_prekey_when_the_tag_names_the_contact() -> None:
    alice = _alice_starts()
    first, alice, _ = _send(ALICE, BOB, alice, b"one")
    bob = open_handshake(first, BOB, _lookup, NOW, peer_for=lambda _k: Peer()).peer
    second, alice, _ = _send(ALICE, BOB, alice, b"two")

    def no_peer(_key: bytes) -> Peer:
        raise AssertionError("the known sessions were enough")
    got = open_handshake(second, BOB, lambda _id: None, NOW, peer_for=no_peer, known=bob)
    assert got.outcome is Outcome.SAME and got.opened.payload == b"two"


def test_a_replay_is_a_duplicate_and_changes_nothing() -> None:
    alice = _alice_starts()
    first, alice, _ = _send(ALICE, BOB, alice, b"once")
    bob = open_handshake(first, BOB, _lookup, NOW, peer_for=lambda _k: Peer()).peer
    with pytest.raises(DuplicateMessageError):
        open_handshake(first, BOB, _lookup, NOW, peer_for=lambda _k: bob)
    reply, bob, _ = _send(BOB, ALICE, bob, b"ok")
    alice = open_session(reply, ALICE, alice, NOW).peer
    with pytest.raises(DuplicateMessageError):
        open_session(reply, ALICE, alice, NOW)


def test_only_the_recipient_opens_and_only_the_sessions_contact_may_sign() -> None:
    alice = _alice_starts()
    first, alice, _ = _send(ALICE, BOB, alice, b"for Bob")
    with pytest.raises((SessionError, DecryptionError)):
        open_handshake(first, CAROL, _lookup, NOW,
                       peer_for=lambda _k: Peer())  # Carol's identity: no
    with pytest.raises(UnknownPrekeyError):
        open_handshake(first, BOB, lambda _id: None, NOW, peer_for=lambda _k: Peer())
    bob = open_handshake(first, BOB, _lookup, NOW, peer_for=lambda _k: Peer()).peer
    # Carol, who has no session with Bob, cannot make one of Alice's messages
    forged_peer = begin(Peer(), initiator_session(initiate(
        identity=CAROL, responder=BOB.public, prekey=PREKEY, one_time=None, now=NOW,
        ephemeral_secret=_rand(32), encapsulated=kem.encapsulate(PREKEY.kem)), _rand(32)), NOW)
    forged, _, _ = _send(CAROL, BOB, forged_peer, b"I am Alice")
    with pytest.raises((SessionError, DecryptionError)):
        open_session(forged, BOB, bob, NOW)  # not in any of Bob's sessions with Alice
    got = open_handshake(forged, BOB, _lookup, NOW, peer_for=lambda _k: Peer())
    assert got.opened.sender == CAROL.public  # a session with Carol, as Carol


def test_a_flipped_bit_is_refused_by_relays_and_by_the_recipient() -> None:
    alice = _alice_starts()
    first, alice, _ = _send(ALICE, BOB, alice, b"intact")
    raw = first.raw[:-1] + bytes([first.raw[-1] ^ 1])
    with pytest.raises(BadSignatureError):
        check_envelope(raw, now=NOW, base_bits=BITS)
    with pytest.raises((SessionError, DecryptionError)):
        open_handshake(E.parse_envelope(raw), BOB, _lookup, NOW, peer_for=lambda _k: Peer())


def test_stamps_must_fit_the_message() -> None:
    alice = _alice_starts()
    with pytest.raises(LocalProtocolError, match="4096-byte stamp"):
        seal_session(sender=ALICE, recipient=BOB.public, kind=Kind.DIRECT, tag=TAG,
                     stamp=_stamp(256), peer=alice, payload=b"x", ratchet_secret=_rand(32))
    with pytest.raises(LocalProtocolError, match="no session"):
        seal_session(sender=ALICE, recipient=BOB.public, kind=Kind.DIRECT, tag=TAG,
                     stamp=_stamp(256), peer=Peer(), payload=b"x", ratchet_secret=_rand(32))
    assert session_bucket(0, False) == 256 and session_bucket(256 - 81 - 128 - 1, False) == 256
    assert session_bucket(256 - 81 - 128, False) == 1024
    assert sealed_bucket(256 - 32 - 128 - 1) == 256 and sealed_bucket(256 - 32 - 128) == 1024
    with pytest.raises(LocalProtocolError, match="too large"):
        sealed_bucket(70_000)


def test_a_room_message_in_a_sealed_body() -> None:
    room_secret = tags.room_secret("public")
    room_pub = crypto.x25519_public(room_secret)
    text = b"hello room"
    raw = seal_sealed(sender=ALICE, recipient=room_pub, kex_public=room_pub, kind=Kind.ROOM,
                      tag=tags.room_tag(room_pub, tags.epoch_of(NOW)),
                      stamp=_stamp(sealed_bucket(len(text))), payload=text,
                      ephemeral_secret=_rand(32))
    env = check_envelope(raw, now=NOW, base_bits=BITS)
    opened = open_sealed(env, room_pub, [room_secret])
    assert (opened.sender, opened.payload, opened.kind) == (ALICE.public, text, Kind.ROOM)
    assert opened.proof_message(env).startswith(crypto.SIG_ENVELOPE + room_pub)
    with pytest.raises(DecryptionError):
        open_sealed(env, room_pub, [tags.room_secret("elsewhere")])


def test_a_handshake_made_in_the_future_is_refused() -> None:
    hs = initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None,
                  now=NOW + 3600, ephemeral_secret=_rand(32),
                  encapsulated=kem.encapsulate(PREKEY.kem))
    ahead = begin(Peer(), initiator_session(hs, _rand(32)), NOW + 3600)
    env, _, _ = _send(ALICE, BOB, ahead, b"from an hour ahead")
    with pytest.raises(SessionError, match="future"):
        open_handshake(env, BOB, _lookup, NOW, peer_for=lambda _k: Peer())
