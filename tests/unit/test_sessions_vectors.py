"""Known-answer vectors of the sessions layer: docs/vectors/sessions.json.

``build()`` computes the file from the code; the tests check that the file still
matches, then use it as a second implementation would — recomputing the handshake
and the first messages from the quoted inputs with nothing but the primitives the
spec names — and check that every hex value quoted in docs/sessions.md is in it.

The ML-KEM-768 ciphertext and shared secret are inputs (the library draws the
encapsulation's randomness itself): the file keeps the ones first recorded, and the
test checks that decapsulating the ciphertext with the recorded seed gives the
recorded secret.

    python -m tests.unit.test_sessions_vectors      rewrites the file
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import pytest

from bridge.core import crypto, kem
from bridge.core import handshake as H
from bridge.core import ratchet as R
from bridge.core.errors import DuplicateMessageError, UnknownSessionError
from bridge.core.identity import Identity
from tests.vectors import quoted

ROOT = Path(__file__).resolve().parents[2]
PATH = ROOT / "docs" / "vectors" / "sessions.json"
SPEC = ROOT / "docs" / "sessions.md"
NOW = 1_800_000_000
MATERIAL = b"ParanoIM test vector material"
OUTER_AD = b"example outer header"
REGENERATE = ("if the change is an intended protocol change, bump the version and run "
              "python -m tests.unit.test_sessions_vectors")


def h(b: bytes) -> str:
    return b.hex()


def seq(start: int, n: int) -> bytes:
    return bytes(range(start, start + n))


ALICE_SEED = bytes([0xA1]) * 32
BOB_SEED = bytes([0xB0]) * 32
SPK_SECRET = seq(0x20, 32)
KEM_SEED = seq(0x40, 64)
OTK_SECRET = seq(0x80, 32)
E_SECRET = seq(0xA0, 32)
E2_SECRET = seq(0xC0, 32)
RATCHET = {"alice_1": seq(0x01, 32), "bob_1": seq(0x41, 32), "alice_2": seq(0x61, 32)}
EXPIRES = NOW + 7 * 86400
OTK_EXPIRES = NOW + 30 * 86400
_SESSION_CONSTANTS = ("CTX_PREKEY_ID", "CTX_HANDSHAKE_", "CTX_SESSION_", "CTX_RATCHET_")


def _recorded_kem() -> kem.Encapsulated:
    if PATH.exists():
        v = json.loads(PATH.read_text("utf-8"))["kem"]
        return kem.Encapsulated(ciphertext=bytes.fromhex(v["ciphertext"]),
                                shared=bytes.fromhex(v["shared"]))
    return kem.encapsulate(kem.public_from_seed(KEM_SEED))  # pragma: no cover (first run)


def _constants() -> tuple[dict[str, str], dict[str, str]]:
    ctx = {k: getattr(crypto, k) for k in sorted(dir(crypto))
           if k.startswith(_SESSION_CONSTANTS)}
    sig = {k: h(getattr(crypto, k)) for k in ("SIG_HYBRID_PREKEY", "SIG_ONE_TIME_PREKEY")}
    return ctx, sig


def build() -> dict[str, Any]:
    alice, bob = Identity.from_seed(ALICE_SEED), Identity.from_seed(BOB_SEED)
    prekey = H.make_hybrid_prekey(bob, SPK_SECRET, KEM_SEED, EXPIRES)
    otk = H.make_one_time_prekey(bob, OTK_SECRET, OTK_EXPIRES)
    enc = _recorded_kem()
    ctx, sig = _constants()
    out: dict[str, Any] = {
        "now": NOW,
        "material": MATERIAL.decode(),
        "contexts": ctx,
        "signature_tags_hex": sig,
        "derive_32": {k: h(crypto.derive(v, MATERIAL)) for k, v in ctx.items()},
        "identities": {"alice_seed": h(ALICE_SEED), "alice_public": h(alice.public),
                       "bob_seed": h(BOB_SEED), "bob_public": h(bob.public),
                       "bob_x25519_public": h(bob.x25519_public)},
        "prekey": {"x25519_secret": h(SPK_SECRET), "kem_seed": h(KEM_SEED), "expires": EXPIRES,
                   "x25519_public": h(prekey.x25519), "kem_public": h(prekey.kem),
                   "signature": h(prekey.signature), "encoded": h(prekey.encode()),
                   "id": h(prekey.id)},
        "one_time_prekey": {"secret": h(OTK_SECRET), "expires": OTK_EXPIRES,
                            "public": h(otk.public), "encoded": h(otk.encode()),
                            "id": h(otk.id)},
        "kem": {"ciphertext": h(enc.ciphertext), "shared": h(enc.shared)},
    }
    cases = []
    for name, e_secret, one_time in (("without a one-time prekey", E_SECRET, None),
                                     ("with a one-time prekey", E2_SECRET, otk)):
        hs = H.initiate(identity=alice, responder=bob.public, prekey=prekey, one_time=one_time,
                        now=NOW, ephemeral_secret=e_secret, encapsulated=enc)
        e_pub = crypto.x25519_public(e_secret)
        material = e_pub + prekey.x25519 + hs.dh[2] + enc.shared
        cases.append({
            "case": name, "ephemeral_secret": h(e_secret), "ephemeral_public": h(e_pub),
            "dh1": h(hs.dh[0]), "dh2": h(hs.dh[1]), "dh3": h(hs.dh[2]), "dh4": h(hs.dh[3]),
            "identity_key": h(crypto.derive(crypto.CTX_HANDSHAKE_IDENTITY_KEY, material)),
            "identity_nonce": h(crypto.derive(crypto.CTX_HANDSHAKE_IDENTITY_NONCE, material,
                                              24)),
            "init": h(hs.init), "transcript": h(hs.transcript), "secret": h(hs.secret),
            "session_id": h(hs.session_id), "ad": h(hs.ad)})
    out["handshakes"] = cases
    out["ratchet"] = _conversation(alice, bob, prekey, enc)
    return out


def _send(state: R.Session, text: bytes, secret: bytes,
          who: str) -> tuple[R.Session, dict[str, Any]]:
    if state.cks is None:
        assert state.dhr is not None
        dh = crypto.x25519(secret, state.dhr)
        root, ck, _nhks = R.root_step(state.root, dh)
        hk, pub, step = state.nhks, crypto.x25519_public(secret), {
            "ratchet_secret": h(secret), "dh_output": h(dh), "root_after": h(root)}
    else:
        assert state.hks is not None and state.dhs_public is not None
        ck, hk, pub, step = state.cks, state.hks, state.dhs_public, {}
    out = R.encrypt(state, text, OUTER_AD, secret)
    mk, _ = R.chain_step(ck)
    ns = out.state.ns - 1
    plain = pub + struct.pack(">II", out.state.pn, ns)
    assert R.seal_header(hk, plain, state.ad + OUTER_AD) == out.header
    return out.state, {
        "from": who, "text": text.decode(), **step, "chain_key": h(ck), "message_key": h(mk),
        "body_nonce": h(crypto.derive(crypto.CTX_RATCHET_BODY_NONCE, mk, 24)),
        "header_key": h(hk), "header_plain": h(plain), "header": h(out.header),
        "body": h(out.body), "persist": out.persist,
        "carries_init": out.init is not None}


def _conversation(alice: Identity, bob: Identity, prekey: H.HybridPrekey,
                  enc: kem.Encapsulated) -> dict[str, Any]:
    hs = H.initiate(identity=alice, responder=bob.public, prekey=prekey, one_time=None, now=NOW,
                    ephemeral_secret=E_SECRET, encapsulated=enc)
    rk, hka, hkb = R.session_keys(hs.secret)
    a = R.start_initiator(created=hs.created, secret=hs.secret, ad=hs.ad,
                          session_id=hs.session_id, init=hs.init, their_prekey=prekey.x25519,
                          ratchet_secret=RATCHET["alice_1"])
    first_dh = crypto.x25519(RATCHET["alice_1"], prekey.x25519)
    first = R.root_step(rk, first_dh)
    b = R.start_responder(created=hs.created, secret=hs.secret, ad=hs.ad, session_id=hs.session_id,
                          prekey_secret=SPK_SECRET, prekey_public=prekey.x25519)
    msgs = []
    a, m0 = _send(a, b"hello Bob", RATCHET["alice_1"], "alice")
    a, m1 = _send(a, b"are you there?", RATCHET["alice_1"], "alice")
    msgs += [m0, m1]
    order = []
    for m in (m1, m0):  # delivered out of order
        d = R.decrypt(b, bytes.fromhex(m["header"]), bytes.fromhex(m["body"]), OUTER_AD, NOW)
        b = d.state
        order.append({"text": d.plaintext.decode(), "number": d.number,
                      "new_chain": d.new_chain, "skipped_after": b.stored_keys})
    b, m2 = _send(b, b"yes", RATCHET["bob_1"], "bob")
    a = R.decrypt(a, bytes.fromhex(m2["header"]), bytes.fromhex(m2["body"]), OUTER_AD,
                  NOW).state
    a, m3 = _send(a, b"good", RATCHET["alice_2"], "alice")
    b = R.decrypt(b, bytes.fromhex(m3["header"]), bytes.fromhex(m3["body"]), OUTER_AD,
                  NOW).state
    msgs += [m2, m3]
    return {
        "outer_ad": h(OUTER_AD), "handshake": "without a one-time prekey",
        "first_root": h(rk), "header_key_initiator": h(hka), "header_key_responder": h(hkb),
        "alice_first_ratchet_secret": h(RATCHET["alice_1"]),
        "alice_first_ratchet_public": h(crypto.x25519_public(RATCHET["alice_1"])),
        "alice_first_dh_output": h(first_dh),
        "alice_first_step": {"root": h(first[0]), "chain_key": h(first[1]),
                             "next_header_key": h(first[2])},
        "messages": msgs, "bob_opens_in_order": order,
        "state_alice": h(a.to_bytes()), "state_bob": h(b.to_bytes()),
        "rejections": _rejections(b, m0, m3)}


def _rejections(b: R.Session, m0: dict[str, Any], m3: dict[str, Any]) -> list[dict[str, str]]:
    cases = []
    for name, header, body in (
            ("the first message again (a replay)", m0["header"], m0["body"]),
            ("the last message again", m3["header"], m3["body"])):
        try:
            R.decrypt(b, bytes.fromhex(header), bytes.fromhex(body), OUTER_AD, NOW)
        except DuplicateMessageError as exc:
            cases.append({"case": name, "error": type(exc).__name__})
    flipped = bytearray(bytes.fromhex(m3["header"]))
    flipped[40] ^= 1
    try:
        R.decrypt(b, bytes(flipped), bytes.fromhex(m3["body"]), OUTER_AD, NOW)
    except UnknownSessionError as exc:
        cases.append({"case": "the last message, one header bit flipped",
                      "error": type(exc).__name__})
    assert len(cases) == 3
    return cases


# --- tests ------------------------------------------------------------------------------------

VECTORS: dict[str, Any] = json.loads(PATH.read_text("utf-8")) if PATH.exists() else {}


def b(x: str) -> bytes:
    return bytes.fromhex(x)


def test_file_matches_the_code() -> None:
    fresh = build()
    assert set(VECTORS) == set(fresh), REGENERATE
    for section in fresh:
        assert fresh[section] == VECTORS[section], f"{section} differs: {REGENERATE}"


def test_recorded_encapsulation_decapsulates() -> None:
    v = VECTORS
    assert kem.public_from_seed(b(v["prekey"]["kem_seed"])).hex() == v["prekey"]["kem_public"]
    assert kem.decapsulate(b(v["prekey"]["kem_seed"]), b(v["kem"]["ciphertext"])).hex() == \
        v["kem"]["shared"]


def _derive(ctx: str, m: bytes, n: int = 32) -> bytes:
    return crypto.derive(ctx, m, n)


@pytest.mark.parametrize("case", [0, 1])
def test_handshake_from_the_spec_alone(case: int) -> None:
    """The responder's side, from the quoted inputs with only derive, X25519, the AEAD and
    ML-KEM decapsulation, following docs/sessions.md §4 step by step."""
    v, hs = VECTORS, VECTORS["handshakes"][case]
    ctx = v["contexts"]
    bob = Identity.from_seed(b(v["identities"]["bob_seed"]))
    init = b(hs["init"])
    assert len(init) == 1194 and init[0] == 1 and init[1] == case
    prekey_id, otk_id, e_pub = init[2:10], init[10:18], init[18:50]
    ct, created, sealed = init[50:1138], init[1138:1146], init[1146:]
    assert int.from_bytes(created, "big") == v["now"]
    pre = v["prekey"]
    public_part = b(pre["x25519_public"]) + b(pre["kem_public"]) + struct.pack(">Q",
                                                                               pre["expires"])
    assert prekey_id == _derive(ctx["CTX_PREKEY_ID"], b"\x01" + public_part, 8)
    assert b(pre["encoded"]) == public_part + b(pre["signature"])
    crypto.verify(bob.public, b(v["signature_tags_hex"]["SIG_HYBRID_PREKEY"]) + bob.public
                  + public_part, b(pre["signature"]))
    spk = b(pre["x25519_secret"])
    dh3 = crypto.x25519(spk, e_pub)
    ss = kem.decapsulate(b(pre["kem_seed"]), ct)
    material = e_pub + b(pre["x25519_public"]) + dh3 + ss
    key = _derive(ctx["CTX_HANDSHAKE_IDENTITY_KEY"], material)
    nonce = _derive(ctx["CTX_HANDSHAKE_IDENTITY_NONCE"], material, 24)
    initiator = crypto.aead_decrypt(key, nonce, sealed, init[:1146])
    assert initiator.hex() == v["identities"]["alice_public"]
    dh1 = crypto.x25519(spk, crypto.ed25519_to_x25519_public(initiator))
    dh2 = crypto.x25519(bob.x25519_secret, e_pub)
    if case:
        otk = v["one_time_prekey"]
        assert otk_id == _derive(ctx["CTX_PREKEY_ID"], b"\x02" + b(otk["public"])
                                 + struct.pack(">Q", otk["expires"]), 8)
        dh4, otk_pub = crypto.x25519(b(otk["secret"]), e_pub), b(otk["public"])
    else:
        assert otk_id == bytes(8)
        dh4 = otk_pub = bytes(32)
    transcript = _derive(ctx["CTX_HANDSHAKE_TRANSCRIPT"],
                         initiator + bob.public + public_part + otk_pub + init)
    secret = _derive(ctx["CTX_HANDSHAKE_SECRET"], dh1 + dh2 + dh3 + dh4 + ss + transcript)
    assert [x.hex() for x in (dh1, dh2, dh3, dh4, key, nonce, transcript, secret)] == \
        [hs[k] for k in ("dh1", "dh2", "dh3", "dh4", "identity_key", "identity_nonce",
                         "transcript", "secret")]
    assert _derive(ctx["CTX_SESSION_ID"], init).hex() == hs["session_id"]


def test_ratchet_messages_from_the_spec_alone() -> None:
    """Bob opens Alice's first message with the derivations of §5–§7 and nothing else."""
    v, r = VECTORS, VECTORS["ratchet"]
    ctx = v["contexts"]
    secret = b(v["handshakes"][0]["secret"])
    ad = b(v["handshakes"][0]["ad"]) + b(r["outer_ad"])
    rk = _derive(ctx["CTX_SESSION_ROOT"], secret)
    hka = _derive(ctx["CTX_SESSION_HEADER_INITIATOR"], secret)
    assert (rk.hex(), hka.hex()) == (r["first_root"], r["header_key_initiator"])
    m0 = r["messages"][0]
    header = b(m0["header"])
    plain = crypto.aead_decrypt(hka, header[:24], header[24:], ad)
    assert plain.hex() == m0["header_plain"]
    assert header[:24] == _derive(ctx["CTX_RATCHET_HEADER_NONCE"], hka + plain, 24)
    dh = crypto.x25519(b(v["prekey"]["x25519_secret"]), plain[:32])
    step = _derive(ctx["CTX_RATCHET_ROOT"], rk + dh, 96)
    assert step[32:64].hex() == r["alice_first_step"]["chain_key"] == m0["chain_key"]
    mk = _derive(ctx["CTX_RATCHET_MESSAGE"], step[32:64])
    nonce = _derive(ctx["CTX_RATCHET_BODY_NONCE"], mk, 24)
    body = crypto.aead_decrypt(mk, nonce, b(m0["body"]), b(v["handshakes"][0]["ad"]) + header
                               + b(r["outer_ad"]))
    assert body.decode() == m0["text"]
    m1 = r["messages"][1]
    ck1 = _derive(ctx["CTX_RATCHET_CHAIN"], step[32:64])
    assert ck1.hex() == m1["chain_key"]


def test_dh_steps_from_the_spec_alone() -> None:
    """Bob's reply (his sending half) and Alice's next message (her receiving and sending
    halves), each opened with the derivations of §6–§7 and nothing else."""
    v, r = VECTORS, VECTORS["ratchet"]
    ctx = v["contexts"]
    ad, outer = b(v["handshakes"][0]["ad"]), b(r["outer_ad"])
    first = r["alice_first_step"]
    a_pub1 = b(r["alice_first_ratchet_public"])
    root1, a_nhks = b(first["root"]), b(first["next_header_key"])
    yes, good = r["messages"][2], r["messages"][3]

    def step(root: bytes, dh: bytes) -> tuple[bytes, bytes, bytes]:
        out = _derive(ctx["CTX_RATCHET_ROOT"], root + dh, 96)
        return out[:32], out[32:64], out[64:]

    def open_message(hk: bytes, ck: bytes, m: dict[str, Any]) -> bytes:
        header = b(m["header"])
        plain = crypto.aead_decrypt(hk, header[:24], header[24:], ad + outer)
        assert plain.hex() == m["header_plain"]
        mk = _derive(ctx["CTX_RATCHET_MESSAGE"], ck)
        nonce = _derive(ctx["CTX_RATCHET_BODY_NONCE"], mk, 24)
        return crypto.aead_decrypt(mk, nonce, b(m["body"]), ad + header + outer)

    # Bob's sending half: a fresh ratchet key against Alice's first one
    b_secret = b(yes["ratchet_secret"])
    b_pub = crypto.x25519_public(b_secret)
    dh = crypto.x25519(b_secret, a_pub1)
    assert dh.hex() == yes["dh_output"]
    root2, ck_b, _b_nhks = step(root1, dh)
    assert root2.hex() == yes["root_after"] and ck_b.hex() == yes["chain_key"]
    # Alice opens it under NHKb, her next header key, after her receiving half
    hkb = b(r["header_key_responder"])
    a_secret1 = b(r["alice_first_ratchet_secret"])
    assert crypto.x25519_public(a_secret1) == a_pub1
    assert step(root1, crypto.x25519(a_secret1, b_pub))[1] == ck_b
    assert open_message(hkb, ck_b, yes).decode() == "yes"
    # Alice's sending half: her second ratchet key against Bob's, under her NHKs
    a_secret = b(good["ratchet_secret"])
    dh2 = crypto.x25519(a_secret, b_pub)
    root3, ck_a2, _ = step(root2, dh2)
    assert root3.hex() == good["root_after"] and ck_a2.hex() == good["chain_key"]
    assert good["header_key"] == a_nhks.hex()
    assert open_message(a_nhks, ck_a2, good).decode() == "good"


def test_stored_states_parse_and_reencode() -> None:
    for who in ("state_alice", "state_bob"):
        blob = b(VECTORS["ratchet"][who])
        assert R.Session.from_bytes(blob).to_bytes() == blob


# --- the spec quotes only what the file holds ---------------------------------------------

_HEX, _strings = quoted.HEX, quoted.strings


def test_every_value_quoted_in_the_spec_is_in_the_file() -> None:
    text = SPEC.read_text("utf-8")
    haystack = "\n".join(_strings(VECTORS))
    quoted = _HEX.findall(text)
    assert len(quoted) >= 10, "sessions.md quotes too few vectors"
    missing = [q for q in quoted if q not in haystack]
    assert not missing, f"sessions.md quotes values that are not in sessions.json: {missing}"
    for name, value in VECTORS["contexts"].items():
        assert f"`{value}`" in text, f"sessions.md does not list {name}"


if __name__ == "__main__":
    PATH.write_text(json.dumps(build(), indent=1) + "\n", "utf-8")
    print(f"wrote {PATH}", file=sys.stderr)
