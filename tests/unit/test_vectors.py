"""Known-answer vectors: docs/vectors/core.json against the code, and the specs against it.

The file is recomputed from the code section by section (a changed context
string, signature tag or byte layout fails here), then the vectors are used the
way a second implementation would use them: decode, open, verify, refuse.
Finally every hex string, address and fingerprint quoted in the core's specs
(docs/addresses.md, envelope.md, pow.md, threat-model.md) must be found in the
file, so the specs cannot drift from the code either.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.core import address, crypto, errors, pow, tags
from bridge.core import envelope as E
from bridge.core.checks import check_envelope
from bridge.core.identity import Identity, SignedPrekey
from bridge.core.records import parse_record
from bridge.core.seal import open_envelope
from tests.vectors import generate, quoted

ROOT = Path(__file__).resolve().parents[2]
VECTORS: dict[str, Any] = json.loads((ROOT / "docs" / "vectors" / "core.json").read_text("utf-8"))
FRESH: dict[str, Any] = generate.build()
NOW: int = VECTORS["now"]
REGENERATE = ("if the change is an intended protocol change, bump the version and run "
              "python tests/vectors/generate.py")


def b(x: str) -> bytes:
    return bytes.fromhex(x)


# Sections keyed by constant name: a context added to crypto.py later (for another
# layer) is not a change to the recorded ones, so only recorded names are compared;
# a recorded name that disappears or changes value fails.
_BY_NAME = ("contexts", "signature_tags_hex", "derive_32")


@pytest.mark.parametrize("section", sorted(FRESH))
def test_section_recomputed_from_the_code_matches(section: str) -> None:
    assert section in VECTORS, f"core.json lacks section {section!r}: {REGENERATE}"
    fresh = FRESH[section]
    if section in _BY_NAME:
        missing = set(VECTORS[section]) - set(fresh)
        assert not missing, f"constants removed from crypto.py: {sorted(missing)}"
        fresh = {k: fresh[k] for k in VECTORS[section]}
    assert fresh == VECTORS[section], f"{section} differs from the code: {REGENERATE}"


def test_no_stale_sections() -> None:
    assert set(VECTORS) == set(FRESH)


def test_context_strings_are_distinct_and_recorded() -> None:
    ctx = {k: getattr(crypto, k) for k in dir(crypto) if k.startswith("CTX_")}
    assert len(set(ctx.values())) == len(ctx), "two purposes share a context string"
    sig = {k: getattr(crypto, k) for k in dir(crypto) if k.startswith("SIG_")}
    assert len(set(sig.values())) == len(sig)
    assert all(v.endswith(b"\x00") for v in sig.values()), "signature tags end in NUL"
    for name, value in VECTORS["contexts"].items():
        assert ctx.get(name) == value, f"context {name} changed: {REGENERATE}"


# --- the vectors used as a second implementation would ----------------------------


@pytest.mark.parametrize("v", VECTORS["addresses"], ids=lambda v: v["seed"][:8])
def test_address_vectors(v: dict[str, Any]) -> None:
    ident = Identity.from_seed(b(v["seed"]))
    assert ident.public.hex() == v["ed25519_public"]
    assert address.decode_address(v["address"]) == ident.public
    assert address.decode_address(v["address"].upper()) == ident.public
    check = crypto.derive(crypto.CTX_ADDRESS_CHECKSUM, ident.public + bytes([v["version"]]), 2)
    assert check.hex() == v["checksum"]
    assert ident.fingerprint == v["fingerprint"]
    assert crypto.ed25519_to_x25519_public(ident.public).hex() == v["x25519_public"]


@pytest.mark.parametrize("v", VECTORS["bad_addresses"], ids=lambda v: v["case"])
def test_bad_address_vectors(v: dict[str, str]) -> None:
    with pytest.raises(getattr(errors, v["error"])) as info:
        address.decode_address(v["address"])
    assert type(info.value).__name__ == v["error"]


def test_tag_vectors() -> None:
    t = VECTORS["tags"]
    pub = b(t["address_tag"]["public"])
    assert tags.address_tag(pub, t["epoch"]).hex() == t["address_tag"]["tag"]
    # version 2: the recipient's shard key, then the first 14 bytes of the tag
    shard = crypto.derive("ParanoIM 2026-12 shard key", pub, 2)
    assert shard.hex() == t["shard_key"]["bob"] == t["address_tag"]["tag_v2"][:4]
    assert (shard + tags.address_tag(pub, t["epoch"])[:14]).hex() == t["address_tag"]["tag_v2"]
    assert tags.address_tag_v2(pub, t["epoch"]).hex() == t["address_tag"]["tag_v2"]
    assert tags.epoch_of(t["now"]) == t["epoch"]
    p = t["pair"]
    a, bob = Identity.from_seed(b(p["a_seed"])), Identity.from_seed(b(p["b_seed"]))
    secret = tags.pair_secret(bob.x25519_secret, bob.public, a.public)
    assert secret.hex() == p["pair_secret"]
    assert tags.pair_tag(secret, p["epoch"] + 1).hex() == p["pair_tag_next_epoch"]
    to_bob = crypto.derive("ParanoIM 2026-12 pair tag to", secret + bob.public
                           + p["epoch"].to_bytes(8, "big"), 16)
    assert (crypto.derive("ParanoIM 2026-12 shard key", bob.public, 2)
            + to_bob[:14]).hex() == p["pair_tag_to_bob"]
    assert p["pair_tag_to_alice"][:4] == t["shard_key"]["alice"]
    r = t["room"]
    assert crypto.x25519_public(tags.room_secret(r["name"])).hex() == r["x25519_public"]
    assert tags.room_tag(b(r["x25519_public"]), r["epoch"]).hex() == r["tag"]
    assert r["tag_v2"] == t["shard_key"]["room"] + r["tag"][:28]
    assert tags.room_tag_v2(b(r["x25519_public"]), r["epoch"]).hex() == r["tag_v2"]
    ann = t["announcement"]
    assert ann["tag_v2"] == t["shard_key"]["bob"] + ann["tag"][:28]
    assert crypto.x25519_public(tags.announce_secret(b(ann["public"]))).hex() == \
        ann["x25519_public"]


def test_pow_vectors_with_the_per_nonce_loop() -> None:
    """The bulk solver wrote the vectors; the naive loop must agree with them."""
    v = VECTORS["pow"]
    digest = b(v["digest"])
    for w in v["work_bits"]:
        assert pow.work_bits(digest, w["nonce"]) == w["work_bits"]
    for s in v["first_solution"]:
        assert pow.solve_per_nonce(digest, s["bits"], 0, s["first_nonce"] + 1) == \
            s["first_nonce"]
    import blake3

    stream = blake3.blake3(b(v["seed"])).digest(length=128)
    assert stream.hex() == v["block0"] + v["block1"]
    for r in v["required_bits"]:
        assert pow.required_bits(r["size"], r["ttl"], r["base_bits"]) == r["bits"]


def test_padding_vectors() -> None:
    v = VECTORS["padding"]
    assert E.unpad(b(v["hello"])) == b"hello"
    for case in v["cases"]:
        padded = E.pad(b"a" * case["plaintext_len"])
        assert len(padded) == case["bucket"]
        assert crypto.hash32(padded).hex() == case["padded_blake3"]
    for rej in v["rejects"]:
        with pytest.raises(getattr(errors, rej["error"])):
            E.unpad(b(rej["padded"]))


@pytest.mark.parametrize("v", VECTORS["records"], ids=lambda v: v["kind"])
def test_record_vectors(v: dict[str, Any]) -> None:
    kind = {"direct": E.Kind.DIRECT, "room": E.Kind.ROOM,
            "announcement": E.Kind.ANNOUNCEMENT, "receipt": E.Kind.RECEIPT}[v["kind"]]
    rec = parse_record(kind, b(v["encoded"]))
    assert rec.encode().hex() == v["encoded"]
    for name, want in v["fields"].items():
        got = getattr(rec, name)
        if name == "prekey":
            got = got.encode().hex()
        elif name == "prekeys":
            got = [p.encode().hex() for p in got]
        elif name == "acked":
            got = [[i.hex(), m] for i, m in got]
        elif name == "chat_state":
            got = got.element
        assert got == want, name


def test_prekey_vector() -> None:
    v = VECTORS["prekey"]
    pk = SignedPrekey.parse(b(v["encoded"]))
    pk.verify(b(v["identity_public"]), NOW)
    assert crypto.x25519_public(b(v["secret"])).hex() == v["public"] == pk.public.hex()
    crypto.verify(b(v["identity_public"]), b(v["signed_message"]), b(v["signature"]))


def test_first_contact_envelope_checks_opens_and_proves() -> None:
    v = VECTORS["envelopes"]["first_contact"]
    raw = b(v["envelope"])
    assert len(raw) == v["size"]
    env = check_envelope(raw, now=NOW, base_bits=v["base_bits"])
    assert env.id.hex() == v["id"] and env.nonce == v["nonce"]
    assert env.tag.hex() == v["tag"] and env.expiry == v["expiry"]
    assert pow.work_bits(b(v["pow_digest"]), v["nonce"]) == v["work_bits"] >= v["required_bits"]
    bob = Identity.from_seed(b(v["recipient_seed"]))
    opened = open_envelope(env, bob.public, [bob.x25519_secret])
    assert opened.payload.hex() == v["payload"]
    assert opened.sender == Identity.from_seed(b(v["sender_seed"])).public
    # what Bob can show a third party: the signed bytes and the signature
    assert opened.proof_message(env).hex() == v["signed_message"]
    crypto.verify(opened.sender, b(v["signed_message"]), b(v["signature"]))
    # the intermediate values, recomputed from the quoted inputs alone
    eph = crypto.x25519_public(b(v["ephemeral_secret"]))
    assert eph.hex() == v["ephemeral_public"] == env.ephemeral.hex()
    kex = b(v["recipient_x25519_public"])
    shared = crypto.x25519(b(v["ephemeral_secret"]), kex)
    assert shared.hex() == v["x25519_shared"]
    key = crypto.derive(crypto.CTX_SEAL_KEY, eph + kex + shared)
    nonce = crypto.derive(crypto.CTX_SEAL_NONCE, eph + kex + shared, 24)
    assert (key.hex(), nonce.hex()) == (v["seal_key"], v["seal_nonce"])
    padded = crypto.aead_decrypt(key, nonce, env.ciphertext, b(v["signed_header"]) + eph)
    assert len(padded) == v["padded_len"] and E.unpad(padded).hex() == v["inner"]


def test_other_envelope_vectors_open() -> None:
    envs = VECTORS["envelopes"]
    alice = Identity.from_seed(generate.ALICE_SEED)
    bob = Identity.from_seed(generate.BOB_SEED)
    p = envs["to_prekey"]
    env = check_envelope(b(p["envelope"]), now=NOW)
    opened = open_envelope(env, bob.public, [b(p["prekey_secret"]), bob.x25519_secret])
    assert opened.key_index == p["key_index_with_[prekey, identity]"] == 0
    assert opened.payload.hex() == p["payload"] and opened.sender == alice.public
    r = envs["room"]
    room_secret = b(VECTORS["tags"]["room"]["x25519_secret"])
    env = check_envelope(b(r["envelope"]), now=NOW)
    opened = open_envelope(env, crypto.x25519_public(room_secret), [room_secret])
    assert opened.payload.hex() == r["payload"]
    a = envs["announcement"]
    env = check_envelope(b(a["envelope"]), now=NOW)
    opened = open_envelope(env, bob.public, [tags.announce_secret(bob.public)])
    assert opened.payload.hex() == a["payload"] and opened.sender == bob.public


def _mutate(raw: bytes, case: dict[str, Any]) -> bytes:
    out = bytearray(raw)
    if "truncate" in case:
        del out[case["truncate"]:]
    if "append_zeros" in case:
        out += bytes(case["append_zeros"])
    if "set_byte" in case:
        out[case["set_byte"][0]] = case["set_byte"][1]
    if "set_bytes" in case:
        at, value = case["set_bytes"][0], b(case["set_bytes"][1])
        out[at : at + len(value)] = value
    if "xor_byte" in case:
        out[case["xor_byte"][0]] ^= case["xor_byte"][1]
    return bytes(out)


@pytest.mark.parametrize("case", VECTORS["envelopes"]["rejections"], ids=lambda c: c["case"])
def test_rejection_vectors(case: dict[str, Any]) -> None:
    raw = _mutate(b(VECTORS["envelopes"]["first_contact"]["envelope"]), case)
    err = getattr(errors, case["error"])
    assert issubclass(err, errors.RemoteProtocolError)
    with pytest.raises(err) as info:
        env = check_envelope(raw, now=case["now"])
        who = Identity.from_seed(b(case["open_as"]))
        open_envelope(env, who.public, [who.x25519_secret])
    assert type(info.value).__name__ == case["error"]


# --- the specs quote only what the vectors hold -------------------------------------

_HEX, _ADDRESS, _FINGERPRINT = quoted.HEX, quoted.ADDRESS, quoted.FINGERPRINT
_strings = quoted.strings


# The specs of the core; other layers' specs carry their own vectors and checks.
SPECS = [ROOT / "docs" / n for n in ("addresses.md", "envelope.md", "pow.md", "threat-model.md")]


def test_specs_exist_and_quote_vectors() -> None:
    assert all(p.exists() for p in SPECS)
    for spec in ("addresses.md", "envelope.md", "pow.md"):
        text = (ROOT / "docs" / spec).read_text("utf-8")
        assert _HEX.search(text) or _ADDRESS.search(text), f"{spec} quotes no vector"


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_every_vector_quoted_in_a_spec_is_in_core_json(spec: Path) -> None:
    haystack = "\n".join(_strings(VECTORS))
    text = spec.read_text("utf-8")
    quoted = _HEX.findall(text) + _ADDRESS.findall(text) + _FINGERPRINT.findall(text)
    missing = [q for q in quoted if q not in haystack]
    assert not missing, f"{spec.name} quotes values that are not in core.json: {missing}"
