"""The hybrid handshake that starts a session (docs/sessions.md §3–§4).

PQXDH-shaped: three or four X25519 agreements and one ML-KEM-768 encapsulation feed
one derivation, so the session key stays secret while either X25519 or ML-KEM holds.

    responder B publishes: identity IK_B (Ed25519; its X25519 form agrees),
        a signed hybrid prekey (X25519 SPK_B + ML-KEM-768 PQ_B, one signature),
        optionally one-time prekeys OPK_B (X25519, signed one by one)
    initiator A: identity IK_A, fresh ephemeral E, encapsulation (ct, SS) to PQ_B

    dh1 = X25519(IK_A, SPK_B)   dh2 = X25519(E, IK_B)   dh3 = X25519(E, SPK_B)
    dh4 = X25519(E, OPK_B) or 32 zero bytes
    SK  = derive(HANDSHAKE_SECRET, dh1 ‖ dh2 ‖ dh3 ‖ dh4 ‖ SS ‖ transcript)

A's identity travels sealed under a key from dh3 and SS, so a relay learns neither
who starts a session nor (later, with a quantum computer) who started it.
Everything is pure: secrets, the encapsulation and the clock come from the caller.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from bridge.core import crypto, kem
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    ExpiredError,
    HandshakeError,
    LocalProtocolError,
    NonCanonicalError,
    OversizeError,
    TruncatedError,
    UnknownPrekeyError,
    UnknownVersionError,
)
from bridge.core.identity import Identity

PREKEY_ID_SIZE: Final = 8
HYBRID_PREKEY_SIZE: Final = 32 + kem.PUBLIC_SIZE + 8 + crypto.SIGNATURE_SIZE  # 1288
ONE_TIME_PREKEY_SIZE: Final = 32 + 8 + crypto.SIGNATURE_SIZE  # 104
INIT_VERSION: Final = 1
FLAG_ONE_TIME: Final = 1
FLAG_RESTART: Final = 2  # the initiator starts over with a contact it had a session with
_SEALED_ID_SIZE: Final = 32 + crypto.AEAD_TAG_SIZE
INIT_SIZE: Final = (1 + 1 + 2 * PREKEY_ID_SIZE + 32 + kem.CIPHERTEXT_SIZE + 8
                    + _SEALED_ID_SIZE)  # 1194
_INIT_PREFIX: Final = INIT_SIZE - _SEALED_ID_SIZE
_NO_KEY: Final = bytes(32)
_NO_ID: Final = bytes(PREKEY_ID_SIZE)
_KIND_HYBRID: Final = b"\x01"
_KIND_ONE_TIME: Final = b"\x02"


def _fixed(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise TruncatedError(f"{what} must be {size} bytes, got {len(data)}")
    if len(data) > size:
        raise OversizeError(f"{what} must be {size} bytes, got {len(data)}")


# --- prekeys ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HybridPrekey:
    """A signed prekey: X25519 public ‖ ML-KEM-768 public ‖ expires u64 ‖ signature."""

    x25519: bytes
    kem: bytes = field(repr=False)
    expires: int
    signature: bytes = field(repr=False)

    def public_part(self) -> bytes:
        return self.x25519 + self.kem + struct.pack(">Q", self.expires)

    def encode(self) -> bytes:
        return self.public_part() + self.signature

    @property
    def id(self) -> bytes:
        return crypto.derive(crypto.CTX_PREKEY_ID, _KIND_HYBRID + self.public_part(),
                             PREKEY_ID_SIZE)

    @classmethod
    def parse(cls, data: bytes) -> HybridPrekey:
        _fixed(data, HYBRID_PREKEY_SIZE, "hybrid signed prekey")
        data = bytes(data)
        (expires,) = struct.unpack_from(">Q", data, 32 + kem.PUBLIC_SIZE)
        return cls(x25519=data[:32], kem=data[32:32 + kem.PUBLIC_SIZE], expires=expires,
                   signature=data[-crypto.SIGNATURE_SIZE:])

    def verify(self, identity_public: bytes, now: int) -> None:
        """Expiry first (free), then the ML-KEM key's own check (cheaper than the
        signature), then the signature."""
        if self.expires <= now:
            raise ExpiredError("the contact's hybrid prekey has expired")
        kem.check_public(self.kem)
        try:
            crypto.verify(identity_public, crypto.SIG_HYBRID_PREKEY + identity_public
                          + self.public_part(), self.signature)
        except BadSignatureError as exc:
            raise BadSignatureError("hybrid prekey is not signed by this identity") from exc


def make_hybrid_prekey(identity: Identity, x25519_secret: bytes, kem_seed: bytes,
                       expires: int) -> HybridPrekey:
    """Sign the key pair made from 32 + 64 random bytes drawn by the caller."""
    x_pub = crypto.x25519_public(x25519_secret)
    k_pub = kem.public_from_seed(kem_seed)
    body = x_pub + k_pub + struct.pack(">Q", expires)
    sig = identity.sign(crypto.SIG_HYBRID_PREKEY + identity.public + body)
    return HybridPrekey(x25519=x_pub, kem=k_pub, expires=expires, signature=sig)


@dataclass(frozen=True, slots=True)
class OneTimePrekey:
    """A one-time prekey: X25519 public ‖ expires u64 ‖ signature (104 bytes)."""

    public: bytes
    expires: int
    signature: bytes = field(repr=False)

    def encode(self) -> bytes:
        return self.public + struct.pack(">Q", self.expires) + self.signature

    @property
    def id(self) -> bytes:
        return crypto.derive(crypto.CTX_PREKEY_ID,
                             _KIND_ONE_TIME + self.public + struct.pack(">Q", self.expires),
                             PREKEY_ID_SIZE)

    @classmethod
    def parse(cls, data: bytes) -> OneTimePrekey:
        _fixed(data, ONE_TIME_PREKEY_SIZE, "one-time prekey")
        data = bytes(data)
        (expires,) = struct.unpack_from(">Q", data, 32)
        return cls(public=data[:32], expires=expires, signature=data[40:])

    def verify(self, identity_public: bytes, now: int) -> None:
        if self.expires <= now:
            raise ExpiredError("the contact's one-time prekey has expired")
        try:
            crypto.verify(identity_public, crypto.SIG_ONE_TIME_PREKEY + identity_public
                          + self.public + struct.pack(">Q", self.expires), self.signature)
        except BadSignatureError as exc:
            raise BadSignatureError("one-time prekey is not signed by this identity") from exc


def make_one_time_prekey(identity: Identity, secret: bytes, expires: int) -> OneTimePrekey:
    public = crypto.x25519_public(secret)
    sig = identity.sign(crypto.SIG_ONE_TIME_PREKEY + identity.public + public
                        + struct.pack(">Q", expires))
    return OneTimePrekey(public=public, expires=expires, signature=sig)


# --- the first-message block ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitBlock:
    """What every message carries until the initiator has heard back (1194 bytes).

    version u8 ‖ flags u8 ‖ prekey id[8] ‖ one-time id[8] ‖ E[32] ‖ ML-KEM ct[1088]
    ‖ created u64 ‖ sealed initiator identity[48]

    ``created`` is the initiator's clock when it started the session; it tells a late
    handshake of a simultaneous start from a contact starting over (sessions.py).
    ``restart`` (flag 2) says the initiator starts over on purpose (it lost its
    session, or the person asked): never the other half of a simultaneous start.
    """

    prekey_id: bytes
    one_time_id: bytes | None
    ephemeral: bytes
    kem_ciphertext: bytes = field(repr=False)
    created: int
    sealed_identity: bytes = field(repr=False)
    restart: bool = False

    def encode(self) -> bytes:
        return _init_prefix(self.prekey_id, self.one_time_id, self.ephemeral,
                            self.kem_ciphertext, self.created, self.restart) \
            + self.sealed_identity

    @classmethod
    def parse(cls, data: bytes) -> InitBlock:
        """Sizes, version and flags only: no cryptography."""
        _fixed(data, INIT_SIZE, "session handshake block")
        data = bytes(data)
        if data[0] != INIT_VERSION:
            raise UnknownVersionError(f"handshake version {data[0]} is not spoken here")
        flags = data[1]
        if flags & ~(FLAG_ONE_TIME | FLAG_RESTART):
            raise NonCanonicalError(f"unknown handshake flags {flags:#04x}")
        one_time_id = data[10:18]
        if flags & FLAG_ONE_TIME:
            if one_time_id == _NO_ID:
                raise NonCanonicalError("one-time prekey flagged but its id is zero")
        elif one_time_id != _NO_ID:
            raise NonCanonicalError("a one-time prekey id without the flag")
        return cls(prekey_id=data[2:10],
                   one_time_id=one_time_id if flags & FLAG_ONE_TIME else None,
                   ephemeral=data[18:50], kem_ciphertext=data[50:50 + kem.CIPHERTEXT_SIZE],
                   created=int.from_bytes(data[_INIT_PREFIX - 8:_INIT_PREFIX], "big"),
                   sealed_identity=data[_INIT_PREFIX:], restart=bool(flags & FLAG_RESTART))


def _init_prefix(prekey_id: bytes, one_time_id: bytes | None, ephemeral: bytes,
                 ciphertext: bytes, created: int, restart: bool = False) -> bytes:
    flags = (FLAG_ONE_TIME if one_time_id is not None else 0) | (FLAG_RESTART if restart else 0)
    return (bytes([INIT_VERSION, flags]) + prekey_id + (one_time_id or _NO_ID) + ephemeral
            + ciphertext + struct.pack(">Q", created))


def _identity_keys(ephemeral: bytes, spk: bytes, dh3: bytes, shared: bytes) -> tuple[bytes, bytes]:
    material = ephemeral + spk + dh3 + shared
    return (crypto.derive(crypto.CTX_HANDSHAKE_IDENTITY_KEY, material),
            crypto.derive(crypto.CTX_HANDSHAKE_IDENTITY_NONCE, material, crypto.AEAD_NONCE_SIZE))


@dataclass(frozen=True, slots=True)
class Handshake:
    """The outcome of either side: the session secret and what the ratchet needs."""

    secret: bytes = field(repr=False)  # SK
    ad: bytes  # initiator's Ed25519 key ‖ responder's Ed25519 key
    session_id: bytes
    init: bytes  # the encoded InitBlock
    initiator: bytes
    responder: bytes
    prekey_x25519: bytes  # SPK_B: the responder's first ratchet key
    one_time_id: bytes | None
    created: int  # the initiator's clock when it started the session
    # the values the known-answer vectors show
    dh: tuple[bytes, bytes, bytes, bytes] = field(repr=False)
    kem_shared: bytes = field(repr=False)
    transcript: bytes = field(repr=False)


def _finish(initiator: bytes, responder: bytes, prekey: HybridPrekey, one_time_public: bytes,
            init: bytes, dh: tuple[bytes, bytes, bytes, bytes], shared: bytes,
            one_time_id: bytes | None, created: int) -> Handshake:
    transcript = crypto.derive(crypto.CTX_HANDSHAKE_TRANSCRIPT, initiator + responder
                               + prekey.public_part() + one_time_public + init)
    secret = crypto.derive(crypto.CTX_HANDSHAKE_SECRET, b"".join(dh) + shared + transcript)
    return Handshake(secret=secret, ad=initiator + responder,
                     session_id=crypto.derive(crypto.CTX_SESSION_ID, init), init=init,
                     initiator=initiator, responder=responder, prekey_x25519=prekey.x25519,
                     one_time_id=one_time_id, created=created, dh=dh, kem_shared=shared,
                     transcript=transcript)


def initiate(*, identity: Identity, responder: bytes, prekey: HybridPrekey,
             one_time: OneTimePrekey | None, now: int, ephemeral_secret: bytes,
             encapsulated: kem.Encapsulated, restart: bool = False) -> Handshake:
    """Start a session with ``responder`` (an Ed25519 key) from its signed prekeys
    (``restart``: starting over with a contact we had a session with, InitBlock).

    ``encapsulated`` is ``kem.encapsulate(prekey.kem)``, made by the caller; the
    prekeys are verified here (expiry, signature, ML-KEM key check).
    """
    if len(encapsulated.ciphertext) != kem.CIPHERTEXT_SIZE or \
            len(encapsulated.shared) != kem.SHARED_SIZE:
        raise LocalProtocolError("not an ML-KEM-768 encapsulation")
    if crypto.equal(identity.public, responder):
        raise LocalProtocolError("a session with oneself")
    prekey.verify(responder, now)
    if one_time is not None:
        one_time.verify(responder, now)
    responder_x = crypto.ed25519_to_x25519_public(responder)
    e_pub = crypto.x25519_public(ephemeral_secret)
    dh3 = crypto.x25519(ephemeral_secret, prekey.x25519)
    dh1 = crypto.x25519(identity.x25519_secret, prekey.x25519)
    dh2 = crypto.x25519(ephemeral_secret, responder_x)
    dh4 = crypto.x25519(ephemeral_secret, one_time.public) if one_time else _NO_KEY
    one_time_id = one_time.id if one_time else None
    prefix = _init_prefix(prekey.id, one_time_id, e_pub, encapsulated.ciphertext, now, restart)
    key, nonce = _identity_keys(e_pub, prekey.x25519, dh3, encapsulated.shared)
    init = prefix + crypto.aead_encrypt(key, nonce, identity.public, prefix)
    return _finish(identity.public, responder, prekey,
                   one_time.public if one_time else _NO_KEY, init, (dh1, dh2, dh3, dh4),
                   encapsulated.shared, one_time_id, now)


def respond(*, identity: Identity, block: InitBlock, prekey: HybridPrekey, prekey_secret: bytes,
            kem_seed: bytes, one_time: OneTimePrekey | None = None,
            one_time_secret: bytes | None = None) -> Handshake:
    """The responder's side, given the prekey (and one-time prekey) the block names.

    The caller finds them by id; a missing one is ``UnknownPrekeyError``. Cheapest
    first: ids, then one X25519 and the decapsulation to open the sealed identity,
    then the rest.
    """
    if not crypto.equal(block.prekey_id, prekey.id):
        raise UnknownPrekeyError("the handshake names a prekey we do not hold")
    if block.one_time_id is not None:
        if one_time is None or one_time_secret is None:
            raise UnknownPrekeyError("the handshake names a one-time prekey we do not hold")
        if not crypto.equal(block.one_time_id, one_time.id):
            raise UnknownPrekeyError("the handshake names another one-time prekey")
    dh3 = crypto.x25519(prekey_secret, block.ephemeral)  # WeakKeyError on a low-order E
    shared = kem.decapsulate(kem_seed, block.kem_ciphertext)
    prefix = _init_prefix(block.prekey_id, block.one_time_id, block.ephemeral,
                          block.kem_ciphertext, block.created, block.restart)
    key, nonce = _identity_keys(block.ephemeral, prekey.x25519, dh3, shared)
    try:
        initiator = crypto.aead_decrypt(key, nonce, block.sealed_identity, prefix)
    except DecryptionError as exc:
        raise HandshakeError("the handshake does not open with this prekey") from exc
    if crypto.equal(initiator, identity.public):
        raise HandshakeError("a handshake from our own identity")
    initiator_x = crypto.ed25519_to_x25519_public(initiator)  # WeakKeyError on a bad key
    dh1 = crypto.x25519(prekey_secret, initiator_x)
    dh2 = crypto.x25519(identity.x25519_secret, block.ephemeral)
    if block.one_time_id is not None and one_time_secret is not None and one_time is not None:
        dh4 = crypto.x25519(one_time_secret, block.ephemeral)
        one_time_public = one_time.public
    else:
        dh4 = one_time_public = _NO_KEY
    return _finish(initiator, identity.public, prekey, one_time_public, block.encode(),
                   (dh1, dh2, dh3, dh4), shared, block.one_time_id, block.created)
