"""Known-answer test vectors of the protocol core → docs/vectors/core.json.

    python tests/vectors/generate.py            # rewrite docs/vectors/core.json
    python tests/vectors/generate.py --check    # exit 1 if the file is out of date

Everything is fixed: seeds, ``now``, ephemeral secrets, prekey secrets, and the
proof-of-work nonces, which are the first ones the solver finds counting up from
0 at the stated difficulty. The output is the same on every run and machine, so
tests/unit/test_vectors.py can recompute it from the code and compare. A change
to any context string, signature tag or byte layout changes the file; that is a
protocol change and needs a new version, not a regenerated file.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

import blake3

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bridge.core import address, crypto, pow, tags
from bridge.core import envelope as E
from bridge.core.checks import DEFAULT_BASE_BITS, MAX_CLOCK_SKEW, MAX_TTL, stamp_inline
from bridge.core.identity import Identity, make_prekey
from bridge.core.records import Announcement, ChatState, DirectMessage, Receipt, RoomMessage
from bridge.core.seal import open_envelope, seal

OUT = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "core.json"

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z
TTL = 3600
BASE_BITS = DEFAULT_BASE_BITS
ALICE_SEED = bytes.fromhex("a1" * 32)
BOB_SEED = bytes.fromhex("b0" * 32)
CAROL_SEED = bytes.fromhex("c0" * 32)
EPHEMERAL = bytes(range(0x40, 0x60))  # fixed "random" ephemeral X25519 secret
EPHEMERAL_2 = bytes(range(0x60, 0x80))
EPHEMERAL_3 = bytes(range(0x80, 0xA0))
EPHEMERAL_4 = bytes(range(0xA0, 0xC0))
PREKEY_SECRET = bytes(range(0x20, 0x40))
POW_DIGEST = bytes(range(32))


def h(b: bytes) -> str:
    return b.hex()


def addresses() -> list[dict[str, Any]]:
    seeds = [bytes(32), b"\x01" * 32, bytes(range(32)), ALICE_SEED, BOB_SEED, CAROL_SEED]
    out = []
    for seed in seeds:
        ident = Identity.from_seed(seed)
        raw = base64.b32decode(ident.address.upper())
        out.append({
            "seed": h(seed),
            "ed25519_public": h(ident.public),
            "checksum": h(raw[32:34]),
            "version": raw[34],
            "address": ident.address,
            "fingerprint": ident.fingerprint,
            "x25519_public": h(ident.x25519_public),
        })
    return out


def bad_addresses() -> list[dict[str, str]]:
    a = Identity.from_seed(ALICE_SEED)
    good = a.address
    flipped = good[:10] + ("a" if good[10] != "a" else "b") + good[11:]

    def raw_addr(pub: bytes, version: int) -> str:
        check = crypto.derive(crypto.CTX_ADDRESS_CHECKSUM, pub + bytes([version]), 2)
        return base64.b32encode(pub + check + bytes([version])).decode().lower()

    cases = [
        ("too short", good[:-1], "AddressLengthError"),
        ("outside the alphabet", "1" + good[1:], "AddressAlphabetError"),
        ("one character changed", flipped, "AddressChecksumError"),
        ("version 2", raw_addr(a.public, 2), "AddressVersionError"),
        ("identity point (small order)", raw_addr((1).to_bytes(32, "little"), 1),
         "BadAddressError"),
    ]
    out = []
    for name, text, err in cases:
        try:
            address.decode_address(text)
        except Exception as exc:  # the vector records the type
            assert type(exc).__name__ == err, (name, exc)
        else:
            raise AssertionError(f"{name} was accepted")
        out.append({"case": name, "address": text, "error": err})
    return out


def contexts() -> dict[str, Any]:
    ctx = {k: getattr(crypto, k) for k in sorted(dir(crypto)) if k.startswith("CTX_")}
    sig = {k: getattr(crypto, k).hex() for k in sorted(dir(crypto)) if k.startswith("SIG_")}
    material = b"ParanoIM test vector material"
    derived = {k: h(crypto.derive(v, material)) for k, v in ctx.items()}
    return {"contexts": ctx, "signature_tags_hex": sig,
            "derive_material_hex": h(material), "derive_32": derived}


def tag_vectors() -> dict[str, Any]:
    a, b = Identity.from_seed(ALICE_SEED), Identity.from_seed(BOB_SEED)
    epoch = tags.epoch_of(NOW)
    pair = tags.pair_secret(a.x25519_secret, a.public, b.public)
    assert pair == tags.pair_secret(b.x25519_secret, b.public, a.public)
    room = "public"
    room_secret = tags.room_secret(room)
    room_pub = crypto.x25519_public(room_secret)
    ann_secret = tags.announce_secret(b.public)
    return {
        "epoch_seconds": tags.EPOCH,
        "now": NOW,
        "epoch": epoch,
        "watch_epochs": [tags.watch_epochs(NOW).start, tags.watch_epochs(NOW).stop - 1],
        "shard_key": {"bob": h(tags.shard_key(b.public)), "alice": h(tags.shard_key(a.public)),
                      "room": h(tags.shard_key(room_pub))},
        "address_tag": {"public": h(b.public), "epoch": epoch,
                        "tag": h(tags.address_tag(b.public, epoch)),
                        "tag_v2": h(tags.address_tag_v2(b.public, epoch))},
        "pair": {"a_seed": h(ALICE_SEED), "b_seed": h(BOB_SEED),
                 "x25519_shared": h(crypto.x25519(a.x25519_secret, b.x25519_public)),
                 "pair_secret": h(pair), "epoch": epoch,
                 "pair_tag": h(tags.pair_tag(pair, epoch)),
                 "pair_tag_next_epoch": h(tags.pair_tag(pair, epoch + 1)),
                 "pair_tag_to_bob": h(tags.pair_tag_to(pair, b.public, epoch)),
                 "pair_tag_to_alice": h(tags.pair_tag_to(pair, a.public, epoch))},
        "announcement": {"public": h(b.public), "epoch": epoch,
                         "tag": h(tags.announce_tag(b.public, epoch)),
                         "tag_v2": h(tags.announce_tag_v2(b.public, epoch)),
                         "x25519_secret": h(ann_secret),
                         "x25519_public": h(crypto.x25519_public(ann_secret))},
        "room": {"name": room, "x25519_secret": h(room_secret), "x25519_public": h(room_pub),
                 "epoch": epoch, "tag": h(tags.room_tag(room_pub, epoch)),
                 "tag_v2": h(tags.room_tag_v2(room_pub, epoch))},
    }


def pow_vectors() -> dict[str, Any]:
    seed = pow.pow_seed(POW_DIGEST)
    stream = blake3.blake3(seed).digest(length=64 * 2)
    work = [{"nonce": n, "work_bits": pow.work_bits(POW_DIGEST, n)}
            for n in (0, 1, 2, 3, 1000, 2**32, pow.MAX_NONCE)]
    first = []
    for bits in (4, 8, 12, 16, 20):
        nonce = pow.solve_range(POW_DIGEST, bits, 0, 1 << 26)
        assert nonce is not None
        first.append({"bits": bits, "first_nonce": nonce,
                      "work_bits": pow.work_bits(POW_DIGEST, nonce)})
    required = []
    for size in (338, 1106, 4178, 16466, 65618):  # the five envelope sizes
        for ttl in (600, 3600, 86400, 2 * 86400, 2 * 86400 + 1, 4 * 86400 + 1, MAX_TTL):
            required.append({"size": size, "ttl": ttl, "base_bits": BASE_BITS,
                             "bits": pow.required_bits(size, ttl, BASE_BITS)})
    return {"digest": h(POW_DIGEST), "seed": h(seed), "block0": h(stream[:64]),
            "block1": h(stream[64:128]), "work_bits": work, "first_solution": first,
            "required_bits": required}


def padding() -> dict[str, Any]:
    cases = []
    for n in (0, 5, 254, 255, 256, 1023, 1024, 65534):
        p = E.pad(b"\x61" * n)
        cases.append({"plaintext_len": n, "bucket": len(p),
                      "padded_blake3": h(crypto.hash32(p))})
    small = E.pad(b"hello")
    rejects = [
        {"case": "no 0x80 marker", "padded": h(bytes(256)), "error": "NonCanonicalError"},
        {"case": "0x81 marker", "padded": h(b"x" * 10 + b"\x81" + bytes(245)),
         "error": "NonCanonicalError"},
        {"case": "bucket larger than needed", "padded": h(b"x" * 10 + b"\x80" + bytes(1013)),
         "error": "NonCanonicalError"},
    ]
    return {"buckets": list(E.PAD_BUCKETS), "cases": cases, "hello": h(small),
            "rejects": rejects}


def records() -> dict[str, Any]:
    bob = Identity.from_seed(BOB_SEED)
    pk = make_prekey(bob, PREKEY_SECRET, NOW + 7 * 86400)
    items: list[tuple[str, Any, dict[str, Any]]] = [
        ("direct", DirectMessage(NOW * 1000, "hi"),
         {"sent_at_ms": NOW * 1000, "text": "hi"}),
        ("direct", DirectMessage(NOW * 1000, "héllo ✓", True, "m-1"),
         {"sent_at_ms": NOW * 1000, "text": "héllo ✓", "receipt_wanted": True,
          "message_id": "m-1"}),
        ("direct", DirectMessage(NOW * 1000, "new key", False, "m-2", pk),
         {"sent_at_ms": NOW * 1000, "text": "new key", "message_id": "m-2",
          "prekey": h(pk.encode())}),
        ("direct", DirectMessage.state(NOW * 1000, ChatState.COMPOSING),
         {"sent_at_ms": NOW * 1000, "text": "", "chat_state": "composing"}),
        ("room", RoomMessage(NOW * 1000, "public", "alice", "hello room"),
         {"sent_at_ms": NOW * 1000, "room": "public", "nick": "alice", "text": "hello room"}),
        ("announcement", Announcement(NOW, (pk,), "bob", "http://example.onion:45069"),
         {"issued_at": NOW, "nick": "bob", "endpoint": "http://example.onion:45069",
          "prekeys": [h(pk.encode())]}),
        ("receipt", Receipt(((bytes(range(32)), "m-1"), (b"\xff" * 32, ""))),
         {"acked": [[h(bytes(range(32))), "m-1"], [h(b"\xff" * 32), ""]]}),
    ]
    return {"records": [{"kind": k, "fields": f, "encoded": h(r.encode())}
                        for k, r, f in items]}


def prekey() -> dict[str, Any]:
    bob = Identity.from_seed(BOB_SEED)
    expires = NOW + 7 * 86400
    pk = make_prekey(bob, PREKEY_SECRET, expires)
    message = crypto.SIG_PREKEY + bob.public + pk.public + expires.to_bytes(8, "big")
    return {"identity_seed": h(BOB_SEED), "identity_public": h(bob.public),
            "secret": h(PREKEY_SECRET), "public": h(pk.public), "expires": expires,
            "signed_message": h(message), "signature": h(pk.signature),
            "encoded": h(pk.encode())}


def _envelope(*, sender: Identity, recipient: bytes, kex_public: bytes, kind: E.Kind,
              tag: bytes, payload: bytes, ephemeral_secret: bytes) -> bytes:
    raw = seal(sender_secret_key=sender.secret_key, sender=sender.public, recipient=recipient,
               kex_public=kex_public, kind=kind, tag=tag, expiry=NOW + TTL, payload=payload,
               ephemeral_secret=ephemeral_secret)
    return stamp_inline(raw, now=NOW, base_bits=BASE_BITS)


def envelopes() -> dict[str, Any]:
    alice, bob = Identity.from_seed(ALICE_SEED), Identity.from_seed(BOB_SEED)
    epoch = tags.epoch_of(NOW)
    tag = tags.address_tag(bob.public, epoch)
    payload = DirectMessage(NOW * 1000, "hello Bob", True, "m-1").encode()
    raw = _envelope(sender=alice, recipient=bob.public, kex_public=bob.x25519_public,
                    kind=E.Kind.DIRECT, tag=tag, payload=payload, ephemeral_secret=EPHEMERAL)
    env = E.parse_envelope(raw)
    # every intermediate value of the seal, for a re-implementation to compare against
    eph_pub = crypto.x25519_public(EPHEMERAL)
    shared = crypto.x25519(EPHEMERAL, bob.x25519_public)
    material = eph_pub + bob.x25519_public + shared
    header = raw[: E.SIGNED_HEADER_SIZE]
    signed = crypto.SIG_ENVELOPE + bob.public + header + eph_pub + alice.public + payload
    sig = crypto.sign(alice.secret_key, signed)
    inner = alice.public + bob.public + sig + payload
    opened = open_envelope(env, bob.public, [bob.x25519_secret])
    assert opened.payload == payload and opened.signature == sig
    first_contact = {
        "description": "Alice's first message to Bob, sealed to the X25519 form of his "
                       "identity key, tagged with his address tag, stamped at the default "
                       "difficulty",
        "sender_seed": h(ALICE_SEED), "recipient_seed": h(BOB_SEED),
        "recipient_x25519_public": h(bob.x25519_public),
        "ephemeral_secret": h(EPHEMERAL), "ephemeral_public": h(eph_pub),
        "kind": int(E.Kind.DIRECT), "tag": h(tag), "expiry": NOW + TTL,
        "payload": h(payload),
        "x25519_shared": h(shared),
        "seal_key": h(crypto.derive(crypto.CTX_SEAL_KEY, material)),
        "seal_nonce": h(crypto.derive(crypto.CTX_SEAL_NONCE, material, 24)),
        "signed_header": h(header),
        "signed_message": h(signed),
        "signature": h(sig),
        "inner": h(inner),
        "padded_len": len(E.pad(inner)),
        "base_bits": BASE_BITS,
        "required_bits": pow.required_bits(len(raw), TTL, BASE_BITS),
        "pow_digest": h(env.pow_digest),
        "nonce": env.nonce,
        "work_bits": pow.work_bits(env.pow_digest, env.nonce),
        "envelope": h(raw),
        "size": len(raw),
        "id": h(env.id),
    }

    # the same conversation once Bob's signed prekey is known: pair tag, prekey seal
    pk = make_prekey(bob, PREKEY_SECRET, NOW + 7 * 86400)
    pair = tags.pair_secret(alice.x25519_secret, alice.public, bob.public)
    payload2 = DirectMessage(NOW * 1000 + 1, "again", False, "m-2").encode()
    raw2 = _envelope(sender=alice, recipient=bob.public, kex_public=pk.public,
                     kind=E.Kind.DIRECT, tag=tags.pair_tag(pair, epoch), payload=payload2,
                     ephemeral_secret=EPHEMERAL_2)
    env2 = E.parse_envelope(raw2)
    opened2 = open_envelope(env2, bob.public, [PREKEY_SECRET, bob.x25519_secret])
    to_prekey = {"description": "Alice to Bob, sealed to his signed prekey, pair tag",
                 "prekey_secret": h(PREKEY_SECRET), "ephemeral_secret": h(EPHEMERAL_2),
                 "tag": h(tags.pair_tag(pair, epoch)), "payload": h(payload2),
                 "nonce": env2.nonce, "envelope": h(raw2), "id": h(env2.id),
                 "key_index_with_[prekey, identity]": opened2.key_index}

    room_secret = tags.room_secret("public")
    room_pub = crypto.x25519_public(room_secret)
    payload3 = RoomMessage(NOW * 1000, "public", "alice", "hello room").encode()
    raw3 = _envelope(sender=alice, recipient=room_pub, kex_public=room_pub, kind=E.Kind.ROOM,
                     tag=tags.room_tag(room_pub, epoch), payload=payload3,
                     ephemeral_secret=EPHEMERAL_3)
    room = {"description": "Alice in the public room: recipient and key are the room key",
            "ephemeral_secret": h(EPHEMERAL_3), "payload": h(payload3),
            "nonce": E.parse_envelope(raw3).nonce, "envelope": h(raw3),
            "id": h(E.envelope_id(raw3))}

    ann_pub = crypto.x25519_public(tags.announce_secret(bob.public))
    payload4 = Announcement(NOW, (pk,), "bob", "").encode()
    raw4 = _envelope(sender=bob, recipient=bob.public, kex_public=ann_pub,
                     kind=E.Kind.ANNOUNCEMENT, tag=tags.announce_tag(bob.public, epoch),
                     payload=payload4, ephemeral_secret=EPHEMERAL_4)
    announcement = {"description": "Bob announces his prekey: recipient is his own key, "
                                   "sealed to his announcement key",
                    "ephemeral_secret": h(EPHEMERAL_4), "payload": h(payload4),
                    "nonce": E.parse_envelope(raw4).nonce, "envelope": h(raw4),
                    "id": h(E.envelope_id(raw4))}
    return {"first_contact": first_contact, "to_prekey": to_prekey, "room": room,
            "announcement": announcement, "rejections": rejections(raw)}


def rejections(raw: bytes) -> list[dict[str, Any]]:
    """Mutations of the first-contact envelope and the error each must raise.
    ``check`` is ``check_envelope`` at ``now`` with the default base bits;
    ``open`` additionally opens the envelope as Bob (or as Carol)."""
    out: list[dict[str, Any]] = []

    def add(case: str, error: str, *, now: int = NOW, **mutation: Any) -> None:
        out.append({"case": case, "now": now, "error": error, **mutation})

    add("truncated by one byte", "TruncatedError", truncate=len(raw) - 1)
    add("one byte appended", "NonCanonicalError", append_zeros=1)
    add("oversize", "OversizeError", append_zeros=E.MAX_ENVELOPE_SIZE)
    add("version 3", "UnknownVersionError", set_byte=[0, 3])
    add("version 2 at a version-1 length", "NonCanonicalError", set_byte=[0, 2])
    add("kind 9", "UnknownKindError", set_byte=[1, 9])
    add("nonce out of range", "NonCanonicalError", set_bytes=[26, "0400000000000000"])
    add("expired", "ExpiredError", now=NOW + TTL)
    add("from the future", "FromFutureError", now=NOW + TTL - MAX_TTL - MAX_CLOCK_SKEW - 1)
    add("nonce 0 (weak work)", "WeakProofOfWorkError", set_bytes=[26, "0000000000000000"])
    add("ciphertext bit flipped", "WeakProofOfWorkError", xor_byte=[len(raw) - 1, 1])
    add("tag bit flipped", "WeakProofOfWorkError", xor_byte=[2, 0x80])
    add("opened by Carol (wrong recipient)", "DecryptionError", open_as=h(CAROL_SEED))
    return out


def build() -> dict[str, Any]:
    return {
        "about": "ParanoIM protocol core known-answer vectors; generated by "
                 "tests/vectors/generate.py, checked by tests/unit/test_vectors.py. "
                 "All byte strings are hex.",
        "now": NOW,
        "default_base_bits": DEFAULT_BASE_BITS,
        **contexts(),
        "addresses": addresses(),
        "bad_addresses": bad_addresses(),
        "tags": tag_vectors(),
        "pow": pow_vectors(),
        "padding": padding(),
        **records(),
        "prekey": prekey(),
        "envelopes": envelopes(),
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


def write_or_check(out: Path, text: str, description: str,
                   argv: list[str] | None = None) -> int:
    """The command line every vectors generator shares: write ``text`` to ``out``, or
    with --check say whether the file already holds it (exit 1 if not)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args(argv)
    if args.check:
        same = out.exists() and out.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{out} is out of date")
        return 0 if same else 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return write_or_check(OUT, render(), __doc__.splitlines()[0], argv)

if __name__ == "__main__":
    sys.exit(main())
