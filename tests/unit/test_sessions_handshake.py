"""The hybrid handshake: both sides agree, with and without a one-time prekey; every
tampering and every missing key has its own error; prekeys encode one way."""

from __future__ import annotations

import dataclasses

import pytest

from bridge.core import crypto, kem
from bridge.core import handshake as H
from bridge.core.errors import (
    BadSignatureError,
    ExpiredError,
    HandshakeError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    OversizeError,
    TruncatedError,
    UnknownPrekeyError,
    UnknownVersionError,
    WeakKeyError,
)
from bridge.core.identity import Identity

NOW = 1_800_000_000
ALICE = Identity.from_seed(bytes([0xA1]) * 32)
BOB = Identity.from_seed(bytes([0xB0]) * 32)
CAROL = Identity.from_seed(bytes([0xC0]) * 32)
SPK_SECRET = bytes(range(0x20, 0x40))
KEM_SEED = bytes(range(0x40, 0x80))
OTK_SECRET = bytes(range(0x80, 0xA0))
E_SECRET = bytes(range(0xA0, 0xC0))
PREKEY = H.make_hybrid_prekey(BOB, SPK_SECRET, KEM_SEED, NOW + 7 * 86400)
ONE_TIME = H.make_one_time_prekey(BOB, OTK_SECRET, NOW + 30 * 86400)
ENCAPSULATED = kem.encapsulate(PREKEY.kem)


def _initiate(one_time: H.OneTimePrekey | None = None) -> H.Handshake:
    return H.initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=one_time,
                      now=NOW, ephemeral_secret=E_SECRET, encapsulated=ENCAPSULATED)


def _respond(init: bytes, **kw: object) -> H.Handshake:
    args: dict[str, object] = {"identity": BOB, "block": H.InitBlock.parse(init),
                               "prekey": PREKEY, "prekey_secret": SPK_SECRET,
                               "kem_seed": KEM_SEED}
    args.update(kw)
    return H.respond(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize("with_one_time", [False, True])
def test_both_sides_agree(with_one_time: bool) -> None:
    a = _initiate(ONE_TIME if with_one_time else None)
    extra = {"one_time": ONE_TIME, "one_time_secret": OTK_SECRET} if with_one_time else {}
    b = _respond(a.init, **extra)
    assert len(a.init) == H.INIT_SIZE == 1194
    assert H.InitBlock.parse(a.init).created == NOW == b.created
    assert a.secret == b.secret and a.session_id == b.session_id and a.ad == b.ad
    assert a.ad == ALICE.public + BOB.public
    assert b.initiator == ALICE.public and a.transcript == b.transcript
    assert (a.dh[3] != bytes(32)) is with_one_time
    block = H.InitBlock.parse(a.init)
    assert block.ephemeral == crypto.x25519_public(E_SECRET)
    assert block.kem_ciphertext == ENCAPSULATED.ciphertext
    assert block.prekey_id == PREKEY.id
    assert block.one_time_id == (ONE_TIME.id if with_one_time else None)
    assert ALICE.public not in a.init  # the initiator travels sealed


def test_the_secret_depends_on_both_halves() -> None:
    """A different ML-KEM shared secret alone, or a different ephemeral alone, changes SK."""
    base = _initiate()
    other_kem = H.initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None,
                           now=NOW, ephemeral_secret=E_SECRET,
                           encapsulated=kem.encapsulate(PREKEY.kem))
    other_e = H.initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None,
                         now=NOW, ephemeral_secret=bytes(range(1, 33)),
                         encapsulated=ENCAPSULATED)
    assert len({base.secret, other_kem.secret, other_e.secret}) == 3
    assert base.dh[:3] == other_kem.dh[:3]


def test_prekeys_encode_one_way_and_verify() -> None:
    enc = PREKEY.encode()
    assert len(enc) == H.HYBRID_PREKEY_SIZE == 1288
    assert H.HybridPrekey.parse(enc) == PREKEY
    PREKEY.verify(BOB.public, NOW)
    with pytest.raises(TruncatedError):
        H.HybridPrekey.parse(enc[:-1])
    with pytest.raises(OversizeError):
        H.HybridPrekey.parse(enc + b"\0")
    with pytest.raises(ExpiredError):
        PREKEY.verify(BOB.public, PREKEY.expires)
    with pytest.raises(BadSignatureError):
        PREKEY.verify(CAROL.public, NOW)
    flipped = bytearray(enc)
    flipped[100] ^= 1
    with pytest.raises(BadSignatureError):
        H.HybridPrekey.parse(bytes(flipped)).verify(BOB.public, NOW)
    one = ONE_TIME.encode()
    assert len(one) == H.ONE_TIME_PREKEY_SIZE and H.OneTimePrekey.parse(one) == ONE_TIME
    ONE_TIME.verify(BOB.public, NOW)
    with pytest.raises(BadSignatureError):
        ONE_TIME.verify(CAROL.public, NOW)
    with pytest.raises(ExpiredError):
        ONE_TIME.verify(BOB.public, ONE_TIME.expires + 1)
    assert PREKEY.id != ONE_TIME.id


def test_a_signed_but_invalid_ml_kem_key_is_refused() -> None:
    """FIPS 203's modulus check: coefficients ≥ q are refused even under a good signature."""
    bad_kem = b"\xff" * kem.PUBLIC_SIZE
    body = PREKEY.x25519 + bad_kem + PREKEY.expires.to_bytes(8, "big")
    sig = BOB.sign(crypto.SIG_HYBRID_PREKEY + BOB.public + body)
    bad = dataclasses.replace(PREKEY, kem=bad_kem, signature=sig)
    with pytest.raises(WeakKeyError):
        bad.verify(BOB.public, NOW)


def test_initiator_refuses_bad_prekeys_and_itself() -> None:
    with pytest.raises(ExpiredError):
        H.initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None,
                   now=PREKEY.expires, ephemeral_secret=E_SECRET, encapsulated=ENCAPSULATED)
    with pytest.raises(BadSignatureError):
        H.initiate(identity=ALICE, responder=CAROL.public, prekey=PREKEY, one_time=None,
                   now=NOW, ephemeral_secret=E_SECRET, encapsulated=ENCAPSULATED)
    with pytest.raises(LocalProtocolError):
        H.initiate(identity=BOB, responder=BOB.public, prekey=PREKEY, one_time=None,
                   now=NOW, ephemeral_secret=E_SECRET, encapsulated=ENCAPSULATED)


def test_init_block_parser_is_strict() -> None:
    init = _initiate().init
    with pytest.raises(TruncatedError):
        H.InitBlock.parse(init[:-1])
    with pytest.raises(OversizeError):
        H.InitBlock.parse(init + b"\0")
    with pytest.raises(UnknownVersionError):
        H.InitBlock.parse(b"\x02" + init[1:])
    with pytest.raises(NonCanonicalError):
        H.InitBlock.parse(init[:1] + b"\x04" + init[2:])  # unknown flag
    with pytest.raises(NonCanonicalError):
        H.InitBlock.parse(init[:1] + b"\x01" + init[2:])  # flag without an id
    with pytest.raises(NonCanonicalError):
        H.InitBlock.parse(init[:10] + b"\x01" * 8 + init[18:])  # id without the flag
    assert H.InitBlock.parse(init).encode() == init
    restarted = H.InitBlock.parse(init[:1] + b"\x02" + init[2:])
    assert restarted.restart and restarted.encode()[1] == H.FLAG_RESTART


def test_the_restart_flag_is_authenticated() -> None:
    """The flag is in the prefix the initiator's identity is sealed under: set or
    cleared by a relay, the handshake no longer opens."""
    hs = H.initiate(identity=ALICE, responder=BOB.public, prekey=PREKEY, one_time=None,
                    now=NOW, ephemeral_secret=bytes(range(32)),
                    encapsulated=kem.encapsulate(PREKEY.kem), restart=True)
    block = H.InitBlock.parse(hs.init)
    assert block.restart
    got = H.respond(identity=BOB, block=block, prekey=PREKEY, prekey_secret=SPK_SECRET,
                    kem_seed=KEM_SEED)
    assert got.secret == hs.secret
    cleared = H.InitBlock.parse(hs.init[:1] + b"\x00" + hs.init[2:])
    with pytest.raises(HandshakeError):
        H.respond(identity=BOB, block=cleared, prekey=PREKEY, prekey_secret=SPK_SECRET,
                  kem_seed=KEM_SEED)


def test_responder_errors() -> None:
    a = _initiate()
    with_otk = _initiate(ONE_TIME)
    with pytest.raises(UnknownPrekeyError):
        _respond(a.init[:2] + bytes(8) + a.init[10:])
    with pytest.raises(UnknownPrekeyError):
        _respond(with_otk.init)  # the one-time prekey is gone
    other = H.make_one_time_prekey(BOB, bytes(range(1, 33)), NOW + 86400)
    with pytest.raises(UnknownPrekeyError):
        _respond(with_otk.init, one_time=other, one_time_secret=bytes(range(1, 33)))
    for offset in (20, 60, H.INIT_SIZE - 20, H.INIT_SIZE - 1):
        bad = bytearray(a.init)
        bad[offset] ^= 1
        with pytest.raises((HandshakeError, WeakKeyError)):
            _respond(bytes(bad))
    # a low-order ephemeral is refused before any other work
    with pytest.raises(WeakKeyError):
        _respond(a.init[:18] + bytes(32) + a.init[50:])
    # a one-time prekey swapped for another changes the secret, so the sessions differ
    assert _respond(with_otk.init, one_time=ONE_TIME,
                    one_time_secret=OTK_SECRET).secret == with_otk.secret


def test_handshake_to_the_wrong_identity_fails() -> None:
    a = _initiate()
    with pytest.raises(HandshakeError):
        H.respond(identity=ALICE, block=H.InitBlock.parse(a.init), prekey=PREKEY,
                  prekey_secret=SPK_SECRET, kem_seed=KEM_SEED)
    # Carol holding Bob's prekey secrets but not his identity derives another secret
    c = H.respond(identity=CAROL, block=H.InitBlock.parse(a.init), prekey=PREKEY,
                  prekey_secret=SPK_SECRET, kem_seed=KEM_SEED)
    assert c.secret != a.secret


def test_kem_wrappers_check_sizes() -> None:
    with pytest.raises(MalformedError):
        kem.decapsulate(KEM_SEED, b"\0" * 10)
    with pytest.raises(MalformedError):
        kem.check_public(b"\0" * 10)
    with pytest.raises(LocalProtocolError):
        kem.public_from_seed(b"\0" * 32)
    assert kem.decapsulate(KEM_SEED, ENCAPSULATED.ciphertext) == ENCAPSULATED.shared
