"""Known-answer vectors of version-2 envelopes: docs/vectors/stamped.json against the
code, then used as a second implementation would use them.

The file is recomputed from the code (``tests/vectors/stamped.py``). Then every step
of docs/stamps.md ("The version-2 envelope, byte by byte") is redone from the quoted
inputs with nothing but BLAKE3, X25519, Ed25519 and XChaCha20-Poly1305 called
directly (``blake3``, libsodium through ``nacl.bindings``): the stamp digest, its
proof, the id and the stamp signature; the sealed body of a room message; both forms
of a session body, from the handshake secret of sessions.json. The envelopes are also
checked and opened with the project's code, the rejection vectors refused with their
errors, and every hex value quoted in stamps.md must be in the file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import blake3
import nacl.bindings as sodium
import pytest

from bridge.core import crypto, errors, tags
from bridge.core import envelope as E
from bridge.core.body import open_handshake, open_sealed, open_session
from bridge.core.checks import check_envelope
from bridge.core.handshake import HybridPrekey
from bridge.core.identity import Identity
from bridge.core.records import RoomMessage, parse_record
from bridge.core.sessions import Outcome, Peer
from tests.vectors import quoted, stamped

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "docs" / "vectors" / "stamped.json"
SPEC = ROOT / "docs" / "stamps.md"
VECTORS: dict[str, Any] = json.loads(PATH.read_text("utf-8"))
SESSIONS: dict[str, Any] = json.loads((ROOT / "docs" / "vectors" / "sessions.json")
                                      .read_text("utf-8"))
NOW: int = VECTORS["now"]
REGENERATE = ("if the change is an intended protocol change, bump the version and run "
              "python tests/vectors/stamped.py")
ENVELOPES = [("room", VECTORS["room"]), ("announcement", VECTORS["announcement"]),
             ("session first", VECTORS["sessions"]["first"]),
             ("session reply", VECTORS["sessions"]["reply"])]


def b(x: str) -> bytes:
    return bytes.fromhex(x)


# --- primitives, called directly ------------------------------------------------------


def derive(ctx: str, m: bytes, n: int = 32) -> bytes:
    out: bytes = blake3.blake3(m, derive_key_context=ctx).digest(length=n)
    return out


def x25519(secret: bytes, public: bytes) -> bytes:
    out: bytes = sodium.crypto_scalarmult(secret, public)
    return out


def x25519_base(secret: bytes) -> bytes:
    out: bytes = sodium.crypto_scalarmult_base(secret)
    return out


def aead_open(key: bytes, nonce: bytes, ct: bytes, aad: bytes) -> bytes:
    out: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ct, aad, nonce, key)
    return out


def ed25519_public(seed: bytes) -> bytes:
    public, _secret = sodium.crypto_sign_seed_keypair(seed)
    out: bytes = public
    return out


def ed25519_sign(seed: bytes, message: bytes) -> bytes:
    _public, secret = sodium.crypto_sign_seed_keypair(seed)
    out: bytes = sodium.crypto_sign(message, secret)[:64]
    return out


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> None:
    sodium.crypto_sign_open(signature + message, public)  # raises if it does not verify


def ed25519_to_x25519_secret(seed: bytes) -> bytes:
    _public, secret = sodium.crypto_sign_seed_keypair(seed)
    out: bytes = sodium.crypto_sign_ed25519_sk_to_curve25519(secret)
    return out


def unpad_exact(padded: bytes, length: int) -> bytes:
    """ISO/IEC 7816-4 padding to exactly ``length`` bytes, undone."""
    assert len(padded) == length
    end = len(padded.rstrip(b"\x00"))
    assert padded[end - 1] == 0x80
    return padded[: end - 1]


# --- the file is the code's ---------------------------------------------------------------


def test_file_matches_the_code() -> None:
    fresh = stamped.build()
    assert set(VECTORS) == set(fresh), REGENERATE
    for section in fresh:
        assert fresh[section] == VECTORS[section], f"{section} differs: {REGENERATE}"


def test_session_vectors_continue_sessions_json() -> None:
    """The session envelopes start from sessions.json's first handshake: same inputs."""
    s, hs = VECTORS["sessions"], SESSIONS["handshakes"][0]
    assert s["first"]["init"] == hs["init"]
    assert s["first"]["handshake_secret"] == hs["secret"]
    assert s["first"]["session_id"] == hs["session_id"]
    assert s["first"]["ad"] == hs["ad"]
    assert s["kem"] == SESSIONS["kem"]
    assert s["prekey"]["encoded"] == SESSIONS["prekey"]["encoded"]
    r = SESSIONS["ratchet"]
    assert (s["first_root"], s["header_key_initiator"], s["header_key_responder"]) == \
        (r["first_root"], r["header_key_initiator"], r["header_key_responder"])


# --- the stamp, from the spec alone ---------------------------------------------------------


@pytest.mark.parametrize(("name", "v"), ENVELOPES, ids=[n for n, _ in ENVELOPES])
def test_stamp_from_the_spec_alone(name: str, v: dict[str, Any]) -> None:
    ctx, s = VECTORS["contexts"], v["stamp"]
    public = ed25519_public(b(s["seed"]))
    assert public.hex() == s["public"]
    index = (256, 1024, 4096, 16384, 65536).index(s["bucket"])
    digest_input = struct.pack(">BBQ", 2, index, s["expiry"]) + public
    assert digest_input.hex() == s["digest_input"] and len(digest_input) == 42
    digest = derive(ctx["CTX_STAMP_DIGEST"], digest_input)
    assert digest.hex() == s["digest"] == v["pow_digest"]
    # the proof (pow.md §1): the 64-byte output block at 64·nonce of the seed's stream
    seed = b"ParanoIM 2026-11 proof of work input\x00" + digest
    block = blake3.blake3(seed).digest(length=64, seek=64 * s["nonce"])
    assert block.hex() == s["pow_block"]
    work = 64 - int.from_bytes(block[:8], "big").bit_length()
    assert work == s["work_bits"] >= s["required_bits"]
    assert s["envelope_size"] == 130 + s["bucket"] + 16 == v["size"]
    # the id: the stamp key alone
    assert derive(ctx["CTX_STAMP_ID"], b"\x02" + public).hex() == s["id"] == v["id"]
    # the envelope's fixed part
    raw = b(v["envelope"])
    assert raw[:26].hex() == v["head"]
    assert raw[0] == 2 and raw[1] == v["kind"] and raw[2:18].hex() == v["tag"]
    assert int.from_bytes(raw[18:26], "big") == s["expiry"]
    assert int.from_bytes(raw[26:34], "big") == s["nonce"]
    assert raw[34:66] == public


@pytest.mark.parametrize(("name", "v"), ENVELOPES, ids=[n for n, _ in ENVELOPES])
def test_stamp_signature_from_the_spec_alone(name: str, v: dict[str, Any]) -> None:
    raw = b(v["envelope"])
    message = raw[:26] + raw[34:66] + raw[130:]
    assert message.hex() == v["stamp_message"]
    signed = b(VECTORS["signature_tags_hex"]["SIG_STAMP"]) + message
    assert signed.hex() == v["stamp_signed"]
    assert b(VECTORS["signature_tags_hex"]["SIG_STAMP"]) == b"ParanoIM 2026-12 stamp signature\0"
    # Ed25519 is deterministic: the signature is reproduced from the seed
    assert ed25519_sign(b(v["stamp"]["seed"]), signed).hex() == v["stamp_signature"]
    assert raw[66:130].hex() == v["stamp_signature"]
    ed25519_verify(raw[34:66], signed, raw[66:130])


# --- the sealed body ------------------------------------------------------------------------


def test_sealed_room_body_from_the_spec_alone() -> None:
    v = VECTORS["room"]
    raw, body = b(v["envelope"]), b(v["body"])
    assert raw[130:] == body and len(body) == v["stamp"]["bucket"] + 16
    room_secret = derive("ParanoIM 2026-11 room key", v["room"].encode())
    room_pub = x25519_base(room_secret)
    assert room_pub.hex() == v["room_public"]
    e_pub = x25519_base(b(v["ephemeral_secret"]))
    assert e_pub == body[:32] and e_pub.hex() == v["ephemeral_public"]
    shared = x25519(room_secret, e_pub)
    assert shared == x25519(b(v["ephemeral_secret"]), room_pub)
    assert shared.hex() == v["x25519_shared"]
    material = e_pub + room_pub + shared
    key = derive("ParanoIM 2026-11 seal key", material)
    nonce = derive("ParanoIM 2026-11 seal nonce", material, 24)
    assert (key.hex(), nonce.hex()) == (v["seal_key"], v["seal_nonce"])
    aad = raw[:26] + raw[34:66] + e_pub
    assert aad.hex() == v["aad"] and body[32:].hex() == v["ciphertext"]
    padded = aead_open(key, nonce, body[32:], aad)
    inner = unpad_exact(padded, v["padded_len"])
    assert v["padded_len"] == v["stamp"]["bucket"] - 32
    assert inner.hex() == v["inner"]
    sender, recipient, sig, payload = inner[:32], inner[32:64], inner[64:128], inner[128:]
    assert sender == ed25519_public(b(v["sender_seed"])) and recipient == room_pub
    assert payload.hex() == v["payload"]
    signed = (b"ParanoIM 2026-11 envelope signature\0" + recipient + raw[:26] + raw[34:66]
              + sender + payload)
    assert signed.hex() == v["signed_message"] and sig.hex() == v["signature"]
    ed25519_verify(sender, signed, sig)
    # version 2: the room's shard key, then the first 14 bytes of its room tag
    shard = derive("ParanoIM 2026-12 shard key", room_pub, 2)
    assert (shard + tags.room_tag(room_pub, tags.epoch_of(NOW))[:14]).hex() == v["tag"]


# --- the session bodies, from sessions.json's handshake secret ----------------------------


def _open_session_body(v: dict[str, Any], header_key: bytes, chain_key: bytes, ad: bytes,
                       ) -> tuple[bytes, bytes]:
    """Split a session body (docs/sessions.md §11), open header and ratchet body with the
    given keys; (header plain, inner record)."""
    raw = b(v["envelope"])
    body = raw[130:]
    assert body.hex() == v["body"]
    form = body[0]
    init = body[1:1195] if form == 1 else b""
    header = body[1 + len(init):81 + len(init)]
    ct = body[81 + len(init):]
    outer = raw[:26] + raw[34:66] + body[:1 + len(init)]
    assert (form, outer.hex(), header.hex(), ct.hex()) == \
        (v["form"], v["outer"], v["header"], v["ratchet_body"])
    plain = aead_open(header_key, header[:24], header[24:], ad + outer)
    assert plain.hex() == v["header_plain"]
    assert header[:24] == derive("ParanoIM 2026-12 ratchet header nonce", header_key + plain, 24)
    mk = derive("ParanoIM 2026-12 ratchet message key", chain_key)
    nonce = derive("ParanoIM 2026-12 ratchet body nonce", mk, 24)
    assert (mk.hex(), nonce.hex()) == (v["message_key"], v["body_nonce"])
    padded = aead_open(mk, nonce, ct, ad + header + outer)
    assert len(padded) == v["padded_len"] == len(body) - 1 - len(init) - 80 - 16
    inner = unpad_exact(padded, v["padded_len"])
    assert inner.hex() == v["inner"]
    sender, recipient, sig, payload = inner[:32], inner[32:64], inner[64:128], inner[128:]
    assert sender == ed25519_public(b(v["sender_seed"]))
    assert recipient == ed25519_public(b(v["recipient_seed"]))
    assert payload.hex() == v["payload"]
    signed = (b"ParanoIM 2026-11 envelope signature\0" + recipient + raw[:26] + raw[34:66]
              + sender + payload)
    assert signed.hex() == v["signed_message"] and sig.hex() == v["signature"]
    ed25519_verify(sender, signed, sig)
    return plain, inner


def test_session_first_message_from_the_spec_alone() -> None:
    """Bob opens form 1: the handshake block is the one of sessions.json (whose secret
    test_sessions_vectors derives), then HKa and the first root step (sessions.md §5)."""
    s = VECTORS["sessions"]
    v = s["first"]
    sk, ad = b(v["handshake_secret"]), b(v["ad"])
    body = b(v["body"])
    assert body[0] == 1 and body[1:1195].hex() == v["init"]
    assert derive("ParanoIM 2026-12 session id", body[1:1195]).hex() == v["session_id"]
    hka = derive("ParanoIM 2026-12 session initiator header key", sk)
    rk0 = derive("ParanoIM 2026-12 session first root key", sk)
    # the header opens first, and names the ratchet key the chain comes from
    raw = b(v["envelope"])
    outer = raw[:26] + raw[34:66] + body[:1195]
    plain = aead_open(hka, body[1195:1219], body[1219:1275], ad + outer)
    dh = x25519(b(s["prekey"]["x25519_secret"]), plain[:32])
    assert plain[:32] == x25519_base(b(s["alice_ratchet_secret"]))
    assert struct.unpack(">II", plain[32:]) == (0, 0)  # PN, Ns
    assert dh.hex() == s["alice_first_dh_output"]
    step = derive("ParanoIM 2026-12 ratchet root step", rk0 + dh, 96)
    assert step[:32].hex() == s["alice_first_root"]
    assert step[32:64].hex() == v["chain_key"]
    _open_session_body(v, hka, step[32:64], ad)
    bob = ed25519_public(b(v["recipient_seed"]))
    assert raw[2:18] == (derive("ParanoIM 2026-12 shard key", bob, 2)
                         + tags.address_tag(bob, tags.epoch_of(NOW))[:14])


def test_session_reply_from_the_spec_alone() -> None:
    """Alice opens form 0 under NHKb: her receiving half with Bob's new ratchet key."""
    s = VECTORS["sessions"]
    v = s["reply"]
    sk, ad = b(s["first"]["handshake_secret"]), b(s["first"]["ad"])
    nhkb = derive("ParanoIM 2026-12 session responder header key", sk)
    assert nhkb.hex() == v["header_key"]
    body = b(v["body"])
    assert body[0] == 0
    raw = b(v["envelope"])
    plain = aead_open(nhkb, body[1:25], body[25:81], ad + raw[:26] + raw[34:66] + body[:1])
    assert plain[:32].hex() == v["ratchet_public"] == x25519_base(b(v["ratchet_secret"])).hex()
    assert struct.unpack(">II", plain[32:]) == (0, 0)
    dh = x25519(b(s["alice_ratchet_secret"]), plain[:32])
    assert dh.hex() == v["dh_output"]
    step = derive("ParanoIM 2026-12 ratchet root step", b(v["root_before"]) + dh, 96)
    assert step[:32].hex() == v["root_after"]
    assert step[32:64].hex() == v["chain_key"]
    _open_session_body(v, nhkb, step[32:64], ad)
    alice = ed25519_to_x25519_secret(b(v["recipient_seed"]))
    bob = Identity.from_seed(b(v["sender_seed"]))
    pair = derive("ParanoIM 2026-11 pair secret",
                  min(bob.public, ed25519_public(b(v["recipient_seed"])))
                  + max(bob.public, ed25519_public(b(v["recipient_seed"])))
                  + x25519(alice, bob.x25519_public))
    epoch = NOW // 86400
    to_alice = ed25519_public(b(v["recipient_seed"]))
    assert (derive("ParanoIM 2026-12 shard key", to_alice, 2)
            + derive("ParanoIM 2026-12 pair tag to", pair + to_alice + struct.pack(">Q", epoch),
                     16)[:14]).hex() == v["tag"]


def aead_seal(key: bytes, nonce: bytes, plain: bytes, aad: bytes) -> bytes:
    out: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plain, aad, nonce, key)
    return out


def pad_exact(inner: bytes, length: int) -> bytes:
    return inner + b"\x80" + bytes(length - len(inner) - 1)


def stamp_envelope(head: bytes, s: dict[str, Any], body: bytes) -> bytes:
    """head ‖ nonce ‖ K ‖ stamp signature ‖ body, signed as stamps.md says."""
    public = ed25519_public(b(s["seed"]))
    sig = ed25519_sign(b(s["seed"]), b"ParanoIM 2026-12 stamp signature\0" + head + public + body)
    return head + struct.pack(">Q", s["nonce"]) + public + sig + body


def inner_record(sender_seed: bytes, recipient: bytes, head: bytes, k: bytes,
                 payload: bytes) -> bytes:
    sender = ed25519_public(sender_seed)
    signed = b"ParanoIM 2026-11 envelope signature\0" + recipient + head + k + sender + payload
    return sender + recipient + ed25519_sign(sender_seed, signed) + payload


def test_room_envelope_rebuilt_from_the_spec_alone() -> None:
    """Every byte of the room envelope, built (not opened) from the quoted inputs."""
    v = VECTORS["room"]
    s = v["stamp"]
    room_pub = x25519_base(derive("ParanoIM 2026-11 room key", v["room"].encode()))
    head = bytes([2, v["kind"]]) + b(v["tag"]) + struct.pack(">Q", s["expiry"])
    k = ed25519_public(b(s["seed"]))
    inner = inner_record(b(v["sender_seed"]), room_pub, head, k, b(v["payload"]))
    bucket = next(x for x in (256, 1024, 4096, 16384, 65536) if len(inner) + 1 <= x - 32)
    assert bucket == s["bucket"]
    e_secret = b(v["ephemeral_secret"])
    e_pub = x25519_base(e_secret)
    material = e_pub + room_pub + x25519(e_secret, room_pub)
    ct = aead_seal(derive("ParanoIM 2026-11 seal key", material),
                   derive("ParanoIM 2026-11 seal nonce", material, 24),
                   pad_exact(inner, bucket - 32), head + k + e_pub)
    assert stamp_envelope(head, s, e_pub + ct).hex() == v["envelope"]


def test_session_envelopes_rebuilt_from_the_spec_alone() -> None:
    """Both session envelopes, built from the handshake secret and block of sessions.json,
    the ratchet secrets and the stamps (sessions.md §5–§7, §11; stamps.md)."""
    s = VECTORS["sessions"]
    first, reply = s["first"], s["reply"]
    sk, ad, init = b(first["handshake_secret"]), b(first["ad"]), b(first["init"])
    rk0 = derive("ParanoIM 2026-12 session first root key", sk)
    hka = derive("ParanoIM 2026-12 session initiator header key", sk)
    nhkb = derive("ParanoIM 2026-12 session responder header key", sk)
    spk_pub = x25519_base(b(s["prekey"]["x25519_secret"]))

    def build(v: dict[str, Any], form: int, header_key: bytes, chain_key: bytes,
              ratchet_public: bytes, recipient: bytes) -> bytes:
        st = v["stamp"]
        head = bytes([2, v["kind"]]) + b(v["tag"]) + struct.pack(">Q", st["expiry"])
        k = ed25519_public(b(st["seed"]))
        block = init if form == 1 else b""
        overhead = 81 + len(block)
        inner = inner_record(b(v["sender_seed"]), recipient, head, k, b(v["payload"]))
        bucket = next(x for x in (256, 1024, 4096, 16384, 65536)
                      if len(inner) + 1 <= x - overhead)
        outer = head + k + bytes([form]) + block
        plain = ratchet_public + struct.pack(">II", 0, 0)
        nonce = derive("ParanoIM 2026-12 ratchet header nonce", header_key + plain, 24)
        header = nonce + aead_seal(header_key, nonce, plain, ad + outer)
        mk = derive("ParanoIM 2026-12 ratchet message key", chain_key)
        body = aead_seal(mk, derive("ParanoIM 2026-12 ratchet body nonce", mk, 24),
                         pad_exact(inner, bucket - overhead), ad + header + outer)
        return stamp_envelope(head, st, bytes([form]) + block + header + body)

    def root_step(root: bytes, dh: bytes) -> tuple[bytes, bytes]:
        out = derive("ParanoIM 2026-12 ratchet root step", root + dh, 96)
        return out[:32], out[32:64]

    a_secret = b(s["alice_ratchet_secret"])
    rk1, ck_a = root_step(rk0, x25519(a_secret, spk_pub))
    alice, bob = ed25519_public(b(first["sender_seed"])), ed25519_public(b(reply["sender_seed"]))
    assert build(first, 1, hka, ck_a, x25519_base(a_secret), bob).hex() == first["envelope"]
    b_secret = b(reply["ratchet_secret"])
    _rk2, ck_b = root_step(rk1, x25519(b_secret, x25519_base(a_secret)))
    assert build(reply, 0, nhkb, ck_b, x25519_base(b_secret), alice).hex() == reply["envelope"]


# --- the project's code opens them and refuses the mutations --------------------------------


def test_the_code_checks_and_opens_them() -> None:
    alice = Identity.from_seed(stamped.ALICE_SEED)
    bob = Identity.from_seed(stamped.BOB_SEED)
    r = VECTORS["room"]
    env = check_envelope(b(r["envelope"]), now=NOW)
    secret = tags.room_secret(r["room"])
    opened = open_sealed(env, crypto.x25519_public(secret), [secret])
    assert opened.payload.hex() == r["payload"] and opened.sender == alice.public
    record = parse_record(E.Kind.ROOM, opened.payload, version=2)
    assert isinstance(record, RoomMessage) and record.room == r["room"]
    a = VECTORS["announcement"]
    env = check_envelope(b(a["envelope"]), now=NOW)
    opened = open_sealed(env, bob.public, [tags.announce_secret(bob.public)])
    assert opened.sender == bob.public and opened.payload.hex() == a["payload"]
    s = VECTORS["sessions"]
    prekey = HybridPrekey.parse(b(s["prekey"]["encoded"]))
    first = check_envelope(b(s["first"]["envelope"]), now=NOW)
    got = open_handshake(first, bob, lambda i: (prekey, b(s["prekey"]["x25519_secret"]),
                                                b(s["prekey"]["kem_seed"]))
                         if i == prekey.id else None, NOW, peer_for=lambda _k: Peer())
    assert got.outcome is Outcome.NEW and got.opened.payload.hex() == s["first"]["payload"]
    reply = check_envelope(b(s["reply"]["envelope"]), now=NOW)
    with pytest.raises(errors.UnknownSessionError):  # Alice without her session
        open_session(reply, alice, Peer(), NOW)


@pytest.mark.parametrize("case", VECTORS["rejections"], ids=lambda c: c["case"])
def test_rejection_vectors(case: dict[str, Any]) -> None:
    raw = bytearray(b(VECTORS["room"]["envelope"]))
    if "xor_byte" in case:
        raw[case["xor_byte"][0]] ^= case["xor_byte"][1]
    if "set_bytes" in case:
        at, value = case["set_bytes"][0], b(case["set_bytes"][1])
        raw[at:at + len(value)] = value
    with pytest.raises(getattr(errors, case["error"])) as info:
        check_envelope(bytes(raw), now=NOW)
    assert type(info.value).__name__ == case["error"]


OPENING = VECTORS["opening_rejections"]


def canonical_padding(padded: bytes, overhead: int) -> bool:
    """stamps.md's rule: 0x80 then zeros, in the smallest bucket the record fits."""
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        return False
    smallest = next(x for x in (256, 1024, 4096, 16384, 65536) if end <= x - overhead)
    return len(padded) == smallest - overhead


@pytest.mark.parametrize("case", OPENING, ids=lambda c: c["case"])
def test_opening_rejections(case: dict[str, Any]) -> None:
    """Each is refused by the recipient with its error; the envelopes pass a relay's checks."""
    err = getattr(errors, case["error"])
    if "record" in case:
        with pytest.raises(err):
            parse_record(E.Kind(case["kind"]), b(case["record"]), version=2)
        return
    env = check_envelope(b(case["envelope"]), now=NOW)
    with pytest.raises(err) as info:
        if case["opened_with"] == "room public":
            secret = tags.room_secret("public")
            open_sealed(env, crypto.x25519_public(secret), [secret])
        else:
            open_session(env, Identity.from_seed(stamped.ALICE_SEED), Peer(), NOW)
    assert type(info.value).__name__ == case["error"]


def test_padding_rule_from_the_spec_alone() -> None:
    """The sealed bodies of the vectors decrypted by hand: the good one is padded as the
    spec says, the two refused ones are not."""
    room_secret = derive("ParanoIM 2026-11 room key", b"public")
    room_pub = x25519_base(room_secret)
    bodies = [(True, b(VECTORS["room"]["envelope"]))] + [
        (False, b(c["envelope"])) for c in OPENING if c.get("opened_with") == "room public"]
    assert len(bodies) == 3
    for good, raw in bodies:
        body = raw[130:]
        material = body[:32] + room_pub + x25519(room_secret, body[:32])
        padded = aead_open(derive("ParanoIM 2026-11 seal key", material),
                           derive("ParanoIM 2026-11 seal nonce", material, 24),
                           body[32:], raw[:26] + raw[34:66] + body[:32])
        assert canonical_padding(padded, 32) is good
    form = [c for c in OPENING if c.get("opened_with") == "alice"]
    assert len(form) == 1 and b(form[0]["envelope"])[130] == 2


# --- the spec quotes only what the file holds -----------------------------------------------


def test_every_value_quoted_in_stamps_md_is_in_the_file() -> None:
    text = SPEC.read_text("utf-8")
    haystack = "\n".join(quoted.strings(VECTORS))
    found = quoted.HEX.findall(text)
    assert len(found) >= 20, "stamps.md quotes too few vectors"
    missing = [q for q in found if q not in haystack]
    assert not missing, f"stamps.md quotes values that are not in stamped.json: {missing}"
    for value in VECTORS["contexts"].values():
        assert f"`{value}`" in text or f'"{value}"' in text
