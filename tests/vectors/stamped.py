"""Known-answer vectors of version-2 envelopes → docs/vectors/stamped.json
(spec: docs/stamps.md, "The version-2 envelope, byte by byte").

    python tests/vectors/stamped.py            # rewrite the file
    python tests/vectors/stamped.py --check    # exit 1 if it is out of date

Everything is fixed: seeds, ``now``, ephemeral and ratchet secrets, the stamp
keys, and the stamps' nonces (the first ones the solver finds counting up from 0
at the price a relay asks). The session envelopes continue the handshake of
docs/vectors/sessions.json (same identities, prekey, ephemeral secret, ratchet
secrets and the ML-KEM encapsulation recorded there), so docs/sessions.md §4–§7
lead straight into them. tests/unit/test_stamped_vectors.py recomputes the file
from the code and the intermediate values from the quoted inputs alone.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.core import crypto, kem, pow, tags
from bridge.core import envelope as E
from bridge.core import handshake as H
from bridge.core import ratchet as R
from bridge.core.acts import Act, ActKind, Presence, Show
from bridge.core.body import (
    open_handshake,
    open_sealed,
    open_session,
    seal_sealed,
    seal_session,
    sealed_bucket,
    session_bucket,
)
from bridge.core.checks import DEFAULT_BASE_BITS, check_envelope
from bridge.core.errors import RemoteProtocolError
from bridge.core.filechunks import CHUNK_SIZE, FileChunk, split
from bridge.core.identity import Identity, make_prekey
from bridge.core.records import DirectMessage, HybridAnnouncement, RoomMessage, parse_record
from bridge.core.seal import seal_keys, sign_inner
from bridge.core.sessions import Outcome, Peer, begin, initiator_session
from bridge.core.stamp import Stamp, StampOrder, stamp_digest, stamp_id
from tests.vectors.generate import write_or_check
from tests.vectors.group_records import group_records

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "vectors" / "stamped.json"
SESSIONS = ROOT / "docs" / "vectors" / "sessions.json"

NOW = 1_800_000_000
TTL = 3600
EXPIRY = NOW + TTL
BASE_BITS = DEFAULT_BASE_BITS


def seq(start: int, n: int) -> bytes:
    return bytes(range(start, start + n))


ALICE_SEED = bytes([0xA1]) * 32
BOB_SEED = bytes([0xB0]) * 32
# one stamp per envelope (a stamp is spent once)
STAMP_SEEDS = {"room": bytes([0x51]) * 32, "announcement": bytes([0x52]) * 32,
               "session_first": bytes([0x53]) * 32, "session_reply": bytes([0x54]) * 32,
               "padded_too_far": bytes([0x55]) * 32, "no_marker": bytes([0x56]) * 32,
               "form_2": bytes([0x57]) * 32}
ROOM_EPHEMERAL = seq(0x40, 32)  # as core.json's first-contact envelope
ANNOUNCE_EPHEMERAL = seq(0x60, 32)
# as docs/vectors/sessions.json
SPK_SECRET = seq(0x20, 32)
KEM_SEED = seq(0x40, 64)
HANDSHAKE_EPHEMERAL = seq(0xA0, 32)
ALICE_RATCHET = seq(0x01, 32)
BOB_RATCHET = seq(0x41, 32)
UNUSED_RATCHET = seq(0xE0, 32)  # passed to a send that takes no DH step, so never used
PREKEY_EXPIRES = NOW + 7 * 86400


def h(b: bytes) -> str:
    return b.hex()


def _recorded_kem() -> kem.Encapsulated:
    v = json.loads(SESSIONS.read_text("utf-8"))["kem"]
    return kem.Encapsulated(ciphertext=bytes.fromhex(v["ciphertext"]),
                            shared=bytes.fromhex(v["shared"]))


def mint(name: str, bucket: int) -> tuple[Stamp, dict[str, Any]]:
    """The stamp ``name`` for ``bucket``, expiring at EXPIRY, solved as a relay prices it
    at NOW (pow.md §2 with the lifetime EXPIRY − NOW), and every value of its making."""
    seed = STAMP_SEEDS[name]
    public = crypto.ed25519_public(seed)
    size = E.STAMPED_FIXED + bucket + crypto.AEAD_TAG_SIZE
    bits = pow.required_bits(size, EXPIRY - NOW, BASE_BITS)
    o = StampOrder(seed, public, bucket, EXPIRY, bits)
    nonce = pow.solve_range(o.digest, bits, 0, 1 << 28)
    assert nonce is not None
    minted = o.minted(nonce)
    digest_input = struct.pack(">BBQ", 2, E.PAD_BUCKETS.index(bucket), EXPIRY) + public
    assert crypto.derive(crypto.CTX_STAMP_DIGEST, digest_input) == stamp_digest(public, bucket,
                                                                               EXPIRY)
    return minted, {
        "seed": h(seed), "public": h(public), "bucket": bucket,
        "bucket_index": E.PAD_BUCKETS.index(bucket), "expiry": EXPIRY,
        "digest_input": h(digest_input), "digest": h(o.digest),
        "envelope_size": size, "ttl": EXPIRY - NOW, "base_bits": BASE_BITS,
        "required_bits": bits, "nonce": nonce, "work_bits": minted.bits,
        "pow_block": h(pow._blake3(pow.pow_seed(o.digest)).digest(length=64,
                                                                  seek=64 * nonce)),
        "id_input": h(bytes([2]) + public), "id": h(stamp_id(public)),
    }


def _outer(raw: bytes) -> dict[str, Any]:
    """The outer values every version-2 envelope shows and its stamp signature covers."""
    env = E.parse_envelope(raw)
    message = E.stamp_message(raw)
    return {"head": h(env.signed_header), "stamp_message": h(message),
            "stamp_signed": h(crypto.SIG_STAMP + message),
            "stamp_signature": h(env.stamp_signature), "envelope": h(raw), "size": len(raw),
            "id": h(env.id), "pow_digest": h(env.pow_digest)}


def room() -> dict[str, Any]:
    alice = Identity.from_seed(ALICE_SEED)
    secret = tags.room_secret("public")
    room_pub = crypto.x25519_public(secret)
    payload = RoomMessage(NOW * 1000, "public", "alice", "hello room").encode()
    stamp, made = mint("room", sealed_bucket(len(payload)))
    tag = tags.room_tag_v2(room_pub, tags.epoch_of(NOW))
    raw = seal_sealed(sender=alice, recipient=room_pub, kex_public=room_pub, kind=E.Kind.ROOM,
                      tag=tag, stamp=stamp, payload=payload, ephemeral_secret=ROOM_EPHEMERAL)
    env = check_envelope(raw, now=NOW, base_bits=BASE_BITS)
    opened = open_sealed(env, room_pub, [secret])
    assert opened.payload == payload and opened.sender == alice.public
    head = env.signed_header
    e_pub = crypto.x25519_public(ROOM_EPHEMERAL)
    shared = crypto.x25519(ROOM_EPHEMERAL, room_pub)
    material = e_pub + room_pub + shared
    signed = crypto.SIG_ENVELOPE + room_pub + head + stamp.public + alice.public + payload
    sig = crypto.sign(alice.secret_key, signed)
    inner = alice.public + room_pub + sig + payload
    body = env.ciphertext
    assert body[:32] == e_pub
    return {
        "description": "Alice in the public room, a version-2 envelope with a sealed body",
        "sender_seed": h(ALICE_SEED), "room": "public", "room_public": h(room_pub),
        "kind": int(E.Kind.ROOM), "tag": h(tag), "payload": h(payload),
        "stamp": made,
        "ephemeral_secret": h(ROOM_EPHEMERAL), "ephemeral_public": h(e_pub),
        "x25519_shared": h(shared),
        "seal_key": h(crypto.derive(crypto.CTX_SEAL_KEY, material)),
        "seal_nonce": h(crypto.derive(crypto.CTX_SEAL_NONCE, material, 24)),
        "signed_message": h(signed), "signature": h(sig), "inner": h(inner),
        "padded_len": stamp.bucket - 32,
        "aad": h(head + stamp.public + e_pub),
        "ciphertext": h(body[32:]), "body": h(body),
        **_outer(raw),
    }


def _bob_prekey() -> H.HybridPrekey:
    return H.make_hybrid_prekey(Identity.from_seed(BOB_SEED), SPK_SECRET, KEM_SEED,
                                PREKEY_EXPIRES)


def announcement() -> dict[str, Any]:
    bob = Identity.from_seed(BOB_SEED)
    prekey = _bob_prekey()
    payload = HybridAnnouncement(NOW, (prekey,), "bob", "").encode()
    stamp, made = mint("announcement", sealed_bucket(len(payload)))
    secret = tags.announce_secret(bob.public)
    tag = tags.announce_tag_v2(bob.public, tags.epoch_of(NOW))
    raw = seal_sealed(sender=bob, recipient=bob.public, kex_public=crypto.x25519_public(secret),
                      kind=E.Kind.ANNOUNCEMENT, tag=tag, stamp=stamp, payload=payload,
                      ephemeral_secret=ANNOUNCE_EPHEMERAL)
    env = check_envelope(raw, now=NOW, base_bits=BASE_BITS)
    opened = open_sealed(env, bob.public, [secret])
    assert opened.sender == bob.public and opened.payload == payload
    assert parse_record(E.Kind.ANNOUNCEMENT, payload, version=2) == \
        HybridAnnouncement(NOW, (prekey,), "bob", "")
    return {
        "description": "Bob's version-2 announcement: his signed hybrid prekey, sealed to his "
                       "announcement key, recipient his own key",
        "sender_seed": h(BOB_SEED), "kind": int(E.Kind.ANNOUNCEMENT), "tag": h(tag),
        "announcement_public": h(crypto.x25519_public(secret)),
        "hybrid_prekey": h(prekey.encode()), "payload": h(payload),
        "stamp": made, "ephemeral_secret": h(ANNOUNCE_EPHEMERAL),
        "padded_len": stamp.bucket - 32, "body": h(env.ciphertext),
        **_outer(raw),
    }


def _session_message(raw: bytes, *, sender: Identity, recipient: bytes, payload: bytes,
                     header_key: bytes, chain_key: bytes, ad: bytes) -> dict[str, Any]:
    """Every value of one session body, recomputed from the envelope and its keys."""
    env = E.parse_envelope(raw)
    body = env.ciphertext
    form = body[0]
    init = body[1:1 + H.INIT_SIZE] if form == 1 else b""
    header = body[1 + len(init):1 + len(init) + R.HEADER_SIZE]
    ct = body[1 + len(init) + R.HEADER_SIZE:]
    head = env.signed_header
    outer = head + env.stamp_key + body[:1 + len(init)]
    plain = crypto.aead_decrypt(header_key, header[:24], header[24:], ad + outer)
    assert header[:24] == crypto.derive(crypto.CTX_RATCHET_HEADER_NONCE, header_key + plain, 24)
    mk = crypto.derive(crypto.CTX_RATCHET_MESSAGE, chain_key)
    nonce = crypto.derive(crypto.CTX_RATCHET_BODY_NONCE, mk, 24)
    padded = crypto.aead_decrypt(mk, nonce, ct, ad + header + outer)
    signed = crypto.SIG_ENVELOPE + recipient + head + env.stamp_key + sender.public + payload
    sig = crypto.sign(sender.secret_key, signed)
    inner = sender.public + recipient + sig + payload
    assert padded == inner + b"\x80" + bytes(len(padded) - len(inner) - 1)
    return {
        "form": form, "outer": h(outer), "header_key": h(header_key),
        "header_plain": h(plain), "header_nonce": h(header[:24]), "header": h(header),
        "chain_key": h(chain_key), "message_key": h(mk), "body_nonce": h(nonce),
        "signed_message": h(signed), "signature": h(sig), "inner": h(inner),
        "padded_len": len(padded), "ratchet_body": h(ct), "body": h(body),
        **_outer(raw),
    }


def sessions() -> dict[str, Any]:
    alice, bob = Identity.from_seed(ALICE_SEED), Identity.from_seed(BOB_SEED)
    prekey = _bob_prekey()
    enc = _recorded_kem()
    epoch = tags.epoch_of(NOW)
    hs = H.initiate(identity=alice, responder=bob.public, prekey=prekey, one_time=None, now=NOW,
                    ephemeral_secret=HANDSHAKE_EPHEMERAL, encapsulated=enc)
    rk0, hka, nhkb = R.session_keys(hs.secret)
    rk1, ck_a, _nhka = R.root_step(rk0, crypto.x25519(ALICE_RATCHET, prekey.x25519))
    alice_peer = begin(Peer(), initiator_session(hs, ALICE_RATCHET), NOW)

    # form 1: Alice's first message, with the handshake block, under Bob's address tag
    first_payload = DirectMessage(NOW * 1000, "hello Bob", True, "m-1").encode()
    stamp, made = mint("session_first", session_bucket(len(first_payload), True))
    first_tag = tags.address_tag_v2(bob.public, epoch)
    raw1, alice_peer, persist1 = seal_session(
        sender=alice, recipient=bob.public, kind=E.Kind.DIRECT, tag=first_tag, stamp=stamp,
        peer=alice_peer, payload=first_payload, ratchet_secret=UNUSED_RATCHET)
    first = {"description": "Alice's first message to Bob in a new session: form 1 (the "
                            "handshake block of sessions.json's first handshake), his address "
                            "tag, Alice's first sending chain, message 0",
             "sender_seed": h(ALICE_SEED), "recipient_seed": h(BOB_SEED),
             "kind": int(E.Kind.DIRECT), "tag": h(first_tag), "payload": h(first_payload),
             "stamp": made, "handshake_secret": h(hs.secret), "ad": h(hs.ad),
             "init": h(hs.init), "session_id": h(hs.session_id), "persist": persist1,
             **_session_message(raw1, sender=alice, recipient=bob.public,
                                payload=first_payload, header_key=hka, chain_key=ck_a,
                                ad=hs.ad)}
    env1 = check_envelope(raw1, now=NOW, base_bits=BASE_BITS)

    def prekeys(prekey_id: bytes) -> tuple[H.HybridPrekey, bytes, bytes] | None:
        return (prekey, SPK_SECRET, KEM_SEED) if prekey_id == prekey.id else None

    got = open_handshake(env1, bob, prekeys, NOW, peer_for=lambda _key: Peer())
    assert got.outcome is Outcome.NEW and got.opened.payload == first_payload
    bob_peer = got.peer

    # form 0: Bob's reply under the pair tag to Alice, after his sending half (a new ratchet key)
    reply_payload = DirectMessage(NOW * 1000 + 1, "hi Alice", True, "r-1").encode()
    stamp, made = mint("session_reply", session_bucket(len(reply_payload), False))
    pair = tags.pair_secret(bob.x25519_secret, bob.public, alice.public)
    reply_tag = tags.pair_tag_to(pair, alice.public, epoch)
    raw2, bob_peer, persist2 = seal_session(
        sender=bob, recipient=alice.public, kind=E.Kind.DIRECT, tag=reply_tag, stamp=stamp,
        peer=bob_peer, payload=reply_payload, ratchet_secret=BOB_RATCHET)
    dh = crypto.x25519(BOB_RATCHET, crypto.x25519_public(ALICE_RATCHET))
    rk2, ck_b, _ = R.root_step(rk1, dh)
    reply = {"description": "Bob's reply: form 0, the pair tag to Alice, his first sending chain "
                            "after his sending half with a fresh ratchet key, message 0",
             "sender_seed": h(BOB_SEED), "recipient_seed": h(ALICE_SEED),
             "kind": int(E.Kind.DIRECT), "tag": h(reply_tag), "payload": h(reply_payload),
             "stamp": made, "ratchet_secret": h(BOB_RATCHET),
             "ratchet_public": h(crypto.x25519_public(BOB_RATCHET)),
             "root_before": h(rk1), "dh_output": h(dh), "root_after": h(rk2),
             "persist": persist2,
             **_session_message(raw2, sender=bob, recipient=alice.public,
                                payload=reply_payload, header_key=nhkb, chain_key=ck_b,
                                ad=hs.ad)}
    env2 = check_envelope(raw2, now=NOW, base_bits=BASE_BITS)
    opened = open_session(env2, alice, alice_peer, NOW)
    assert opened.opened.payload == reply_payload and opened.decrypted.new_chain
    return {"kem": {"ciphertext": h(enc.ciphertext), "shared": h(enc.shared)},
            "prekey": {"x25519_secret": h(SPK_SECRET), "kem_seed": h(KEM_SEED),
                       "expires": PREKEY_EXPIRES, "encoded": h(prekey.encode())},
            "handshake_ephemeral_secret": h(HANDSHAKE_EPHEMERAL),
            "alice_ratchet_secret": h(ALICE_RATCHET),
            "first_root": h(rk0), "header_key_initiator": h(hka),
            "header_key_responder": h(nhkb), "alice_first_dh_output": h(
                crypto.x25519(ALICE_RATCHET, prekey.x25519)),
            "alice_first_root": h(rk1),
            "first": first, "reply": reply}


def rejections(raw: bytes) -> list[dict[str, Any]]:
    """Mutations of the room envelope and the error a relay's check raises for each: what
    the stamp digest covers (version, size class, expiry, stamp key) fails the proof; what
    only the stamp signature covers (kind, tag, body) fails the signature."""
    out: list[dict[str, Any]] = []

    def add(case: str, **mutation: Any) -> None:
        mutated = bytearray(raw)
        if "xor_byte" in mutation:
            mutated[mutation["xor_byte"][0]] ^= mutation["xor_byte"][1]
        if "set_bytes" in mutation:
            at, value = mutation["set_bytes"][0], bytes.fromhex(mutation["set_bytes"][1])
            mutated[at:at + len(value)] = value
        try:
            check_envelope(bytes(mutated), now=NOW, base_bits=BASE_BITS)
        except RemoteProtocolError as exc:
            out.append({"case": case, "error": type(exc).__name__, **mutation})
        else:
            raise AssertionError(f"{case}: accepted")

    add("kind changed to direct", xor_byte=[1, 2 ^ 1])
    add("tag bit flipped", xor_byte=[2, 0x80])
    add("expiry one second later", set_bytes=[18, struct.pack(">Q", EXPIRY + 1).hex()])
    add("nonce 0", set_bytes=[26, "0000000000000000"])
    add("stamp key bit flipped", xor_byte=[34, 1])
    add("stamp signature bit flipped", xor_byte=[66, 1])
    add("body bit flipped", xor_byte=[len(raw) - 1, 1])
    return out


def _sealed_room_padded(name: str, bucket: int, pad: Callable[[bytes, int], bytes]) -> bytes:
    """The room message of ``room()`` sealed by hand into ``bucket``, padded by ``pad``."""
    alice = Identity.from_seed(ALICE_SEED)
    room_pub = crypto.x25519_public(tags.room_secret("public"))
    payload = RoomMessage(NOW * 1000, "public", "alice", "hello room").encode()
    stamp, _ = mint(name, bucket)
    head = E.signed_header(E.Kind.ROOM, tags.room_tag_v2(room_pub, tags.epoch_of(NOW)), EXPIRY,
                           version=E.VERSION_STAMPED)
    inner = sign_inner(alice.secret_key, alice.public, room_pub, head, stamp.public, payload)
    e_pub = crypto.x25519_public(ROOM_EPHEMERAL)
    key, nonce = seal_keys(e_pub, room_pub, crypto.x25519(ROOM_EPHEMERAL, room_pub))
    ct = crypto.aead_encrypt(key, nonce, pad(inner, bucket - 32), head + stamp.public + e_pub)
    return E.assemble_stamped(head, stamp, e_pub + ct)


def opening_rejections(reply: bytes) -> list[dict[str, Any]]:
    """Envelopes every relay accepts (valid stamps) that the recipient must refuse when it
    opens them, and records a version-2 parser must refuse."""
    out: list[dict[str, Any]] = []
    room_secret = tags.room_secret("public")
    room_pub = crypto.x25519_public(room_secret)

    def refused(case: str, raw: bytes, opener: Callable[[E.Envelope], object],
                **extra: Any) -> None:
        env = check_envelope(raw, now=NOW, base_bits=BASE_BITS)  # a relay takes it
        try:
            opener(env)
        except RemoteProtocolError as exc:
            out.append({"case": case, "error": type(exc).__name__, **extra,
                        "envelope": h(raw)})
        else:
            raise AssertionError(f"{case}: opened")

    def open_room(env: E.Envelope) -> object:
        return open_sealed(env, room_pub, [room_secret])

    refused("sealed body padded to 1024 where 256 holds it",
            _sealed_room_padded("padded_too_far", 1024,
                                lambda inner, n: inner + b"\x80" + bytes(n - len(inner) - 1)),
            open_room, opened_with="room public")
    refused("sealed body without the 0x80 marker",
            _sealed_room_padded("no_marker", 256,
                                lambda inner, n: inner + bytes(n - len(inner))),
            open_room, opened_with="room public")
    stamp, _ = mint("form_2", 256)
    body = bytearray(E.parse_envelope(reply).ciphertext)
    body[0] = 2
    raw = E.assemble_stamped(reply[:E.SIGNED_HEADER_SIZE], stamp, bytes(body))
    refused("session body of form 2 (the reply's body, form byte changed, stamped anew)", raw,
            lambda env: open_session(env, Identity.from_seed(ALICE_SEED), Peer(), NOW),
            opened_with="alice")

    bob = Identity.from_seed(BOB_SEED)
    prekey = _bob_prekey()
    v1_prekey = make_prekey(bob, SPK_SECRET, PREKEY_EXPIRES)
    records = [
        ("a version-2 direct message carrying a prekey (flag 2)", E.Kind.DIRECT,
         DirectMessage(NOW * 1000, "new key", False, "m-2", v1_prekey).encode()),
        ("a version-2 announcement with three hybrid prekeys", E.Kind.ANNOUNCEMENT,
         struct.pack(">Q", NOW) + b"\x03bob" + b"\x00" + b"\x03" + prekey.encode() * 3),
        ("a version-2 announcement with version-1 prekeys", E.Kind.ANNOUNCEMENT,
         struct.pack(">Q", NOW) + b"\x03bob" + b"\x00" + b"\x01" + v1_prekey.encode()),
    ]
    for case, kind, payload in records:
        try:
            parse_record(kind, payload, version=2)
        except RemoteProtocolError as exc:
            out.append({"case": case, "error": type(exc).__name__, "kind": int(kind),
                        "record": h(payload)})
        else:
            raise AssertionError(f"{case}: parsed")
    return out


def act_records() -> dict[str, Any]:
    """Version-2 direct-message records that act on an earlier message (flag 8) or carry
    a presence (flag 16), with their fields, and records a parser refuses."""
    ms = NOW * 1000
    made = [
        ("correction of m-1, receipt wanted, own id m-2",
         DirectMessage(ms, "hello", True, "m-2", act=Act(ActKind.CORRECTION, "m-1"))),
        ("reply to b-1, which the recipient wrote",
         DirectMessage(ms, "this one", False, "m-3",
                       act=Act(ActKind.REPLY, "b-1", to_recipient=True))),
        ("reactions 👍 and 🎉 to m-1",
         DirectMessage(ms, "", act=Act(ActKind.REACTION, "m-1", ("👍", "🎉")))),
        ("all reactions to m-1 withdrawn", DirectMessage(ms, "", act=Act(ActKind.REACTION,
                                                                          "m-1"))),
        ("retraction of m-1", DirectMessage(ms, "", act=Act(ActKind.RETRACTION, "m-1"))),
        ("read marker: displayed up to b-1",
         DirectMessage(ms, "", act=Act(ActKind.DISPLAYED, "b-1"))),
        ("presence: away, status 'lunch'", DirectMessage.presence_of(ms, Presence(Show.AWAY,
                                                                                  "lunch"))),
        ("presence: unavailable", DirectMessage.presence_of(ms, Presence(Show.UNAVAILABLE))),
    ]
    head = struct.pack(">Q", ms)
    refused = [
        ("act code 6", head + b"\x08\x00\x06\x03m-1"),
        ("an act naming no message", head + b"\x08\x00\x04\x00"),
        ("a retraction with text", head + b"\x08\x00\x04\x03m-1x"),
        ("a retraction asking for a receipt", head + b"\x09\x00\x04\x03m-1"),
        ("a correction without text", head + b"\x08\x00\x01\x03m-1"),
        ("a reply with author code 2", head + b"\x08\x00\x02\x03m-1\x02hi"),
        ("17 reactions", head + b"\x08\x00\x03\x03m-1\x11"
         + b"".join(bytes([1, 0x41 + i]) for i in range(17))),
        ("a reaction of 33 bytes", head + b"\x08\x00\x03\x03m-1\x01\x21" + b"x" * 33),
        ("the same reaction twice", head + b"\x08\x00\x03\x03m-1\x02\x01x\x01x"),
        ("an empty reaction", head + b"\x08\x00\x03\x03m-1\x01\x00"),
        ("bytes after reactions", head + b"\x08\x00\x03\x03m-1\x01\x01x!"),
        ("flags 4 and 8 together", head + b"\x0c\x00\x04\x03m-1"),
        ("presence code 7", head + b"\x10\x00\x07\x00"),
        ("a presence with a message id", head + b"\x10\x03m-1\x03\x00"),
        ("a presence with another flag", head + b"\x11\x00\x03\x00"),
        ("a presence status of 65 bytes", head + b"\x10\x00\x03\x41" + b"s" * 65),
        ("bytes after a presence", head + b"\x10\x00\x03\x00!"),
    ]
    out: dict[str, Any] = {"records": [], "refused": []}
    for case, msg in made:
        payload = msg.encode()
        assert parse_record(E.Kind.DIRECT, payload, version=2) == msg
        out["records"].append({"case": case, "record": h(payload)})
    for case, payload in refused:
        try:
            parse_record(E.Kind.DIRECT, payload, version=2)
        except RemoteProtocolError as exc:
            out["refused"].append({"case": case, "error": type(exc).__name__,
                                   "record": h(payload)})
        else:
            raise AssertionError(f"{case}: parsed")
    return out


def file_records() -> dict[str, Any]:
    """Version-2 direct-message records carrying a piece of a file (flag 32), and
    records a parser refuses. The 61441-byte file is ``seq(0, 256)`` repeated; its
    second chunk holds its last byte."""
    ms = NOW * 1000
    file_id = bytes(range(16))
    hello = b"hello, file\n"
    big = (seq(0, 256) * 241)[:CHUNK_SIZE + 1]
    made = [
        ("a 12-byte text file in one chunk, sent as message f-1",
         DirectMessage(ms, "", message_id="f-1", chunk=FileChunk(
             file_id, crypto.hash32(hello), len(hello), 0, "hello.txt", "text/plain", hello))),
        ("the last chunk (index 1 of 2, 1 byte) of a 61441-byte picture",
         DirectMessage(ms, "", message_id="f-2", chunk=split(
             file_id, crypto.hash32(big), "p.png", "image/png", big)[1])),
    ]
    head = struct.pack(">Q", ms) + b"\x20\x03f-1" + file_id + bytes(32)
    one = struct.pack(">IHH", 1, 0, 1)
    refused = [
        ("a file chunk with another flag", struct.pack(">Q", ms) + b"\x21\x03f-1"),
        ("a file chunk naming no message", struct.pack(">Q", ms) + b"\x20\x00"),
        ("an empty file", head + struct.pack(">IHH", 0, 0, 0) + b"\x01a\x00"),
        ("a file of 64 MiB and one byte", head + struct.pack(">IHH", (64 << 20) + 1, 0, 1093)),
        ("a count that does not follow from the size", head + struct.pack(">IHH", 1, 0, 2)),
        ("chunk index 1 of 1", head + struct.pack(">IHH", 1, 1, 1)),
        ("a name with a slash", head + one + b"\x03a/b\x00x"),
        ("an empty name", head + one + b"\x00\x00x"),
        ("a media type in capitals", head + one + b"\x01a\x09Image/PNG" + b"x"),
        ("one byte more than the chunk's share", head + one + b"\x01a\x00xy"),
        ("one byte less than the chunk's share", head + one + b"\x01a\x00"),
        ("a file chunk cut inside its hash", struct.pack(">Q", ms) + b"\x20\x03f-1"
         + file_id + bytes(8)),
    ]
    out: dict[str, Any] = {"chunk_size": CHUNK_SIZE, "records": [], "refused": []}
    for case, msg in made:
        payload = msg.encode()
        assert parse_record(E.Kind.DIRECT, payload, version=2) == msg
        assert msg.chunk is not None
        out["records"].append({"case": case, "record": h(payload),
                               "data_hash": h(msg.chunk.digest)})
    for case, payload in refused:
        try:
            parse_record(E.Kind.DIRECT, payload, version=2)
        except RemoteProtocolError as exc:
            out["refused"].append({"case": case, "error": type(exc).__name__,
                                   "record": h(payload)})
        else:
            raise AssertionError(f"{case}: parsed")
    return out


def build() -> dict[str, Any]:
    r = room()
    s = sessions()
    return {
        "about": "ParanoIM version-2 (stamped) envelopes; generated by "
                 "tests/vectors/stamped.py, checked by tests/unit/test_stamped_vectors.py. "
                 "Byte strings are hex.",
        "now": NOW,
        "default_base_bits": DEFAULT_BASE_BITS,
        "contexts": {"CTX_STAMP_DIGEST": crypto.CTX_STAMP_DIGEST,
                     "CTX_STAMP_ID": crypto.CTX_STAMP_ID},
        "signature_tags_hex": {"SIG_STAMP": h(crypto.SIG_STAMP),
                               "SIG_ENVELOPE": h(crypto.SIG_ENVELOPE)},
        "sizes": {str(b): E.STAMPED_FIXED + b + crypto.AEAD_TAG_SIZE for b in E.PAD_BUCKETS},
        "room": r,
        "announcement": announcement(),
        "sessions": s,
        "rejections": rejections(bytes.fromhex(r["envelope"])),
        "opening_rejections": opening_rejections(bytes.fromhex(s["reply"]["envelope"])),
        "acts": act_records(),
        "files": file_records(),
        "groups": group_records(NOW),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(OUT, render(), __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
