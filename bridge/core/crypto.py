"""Every cryptographic primitive ParanoIM uses, as small pure functions.

Keys are plain ``bytes``; each function checks lengths on entry. Every derived
key has its own context string (blake3 ``derive_key`` mode), listed here in one
place so no two purposes can ever share one. Randomness is never drawn here:
callers pass seeds in, so tests are deterministic.

PyNaCl (libsodium) is used for signatures rather than ``cryptography``: the
latter accepts the forged signature (R = identity, S = 0) under the identity
public key, libsodium refuses it and small-order keys outright.
"""

from __future__ import annotations

import functools
import hmac
from typing import Final

import blake3
import nacl.bindings as sodium
import nacl.exceptions

from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    LocalProtocolError,
    WeakKeyError,
)

KEY_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
AEAD_TAG_SIZE: Final = 16
AEAD_NONCE_SIZE: Final = 24

# One context string per purpose. Changing any of them is a protocol change.
CTX_ADDRESS_CHECKSUM: Final = "ParanoIM 2026-11 address checksum"
CTX_FINGERPRINT: Final = "ParanoIM 2026-11 display fingerprint"
CTX_SEAL_KEY: Final = "ParanoIM 2026-11 seal key"
CTX_SEAL_NONCE: Final = "ParanoIM 2026-11 seal nonce"
CTX_RECIPIENT_TAG: Final = "ParanoIM 2026-11 recipient tag"
CTX_PAIR_SECRET: Final = "ParanoIM 2026-11 pair secret"  # noqa: S105 (a context label)
CTX_PAIR_TAG: Final = "ParanoIM 2026-11 pair tag"
CTX_ANNOUNCE_TAG: Final = "ParanoIM 2026-11 announcement tag"
CTX_ANNOUNCE_KEY: Final = "ParanoIM 2026-11 announcement key"
CTX_ROOM_KEY: Final = "ParanoIM 2026-11 room key"
CTX_ROOM_TAG: Final = "ParanoIM 2026-11 room tag"
CTX_ENVELOPE_ID: Final = "ParanoIM 2026-11 envelope id"
CTX_POW_INPUT: Final = "ParanoIM 2026-11 proof of work input"
CTX_INVITE_CHECKSUM: Final = "ParanoIM 2026-11 invite checksum"
CTX_EXPORT_KEY: Final = "ParanoIM 2026-11 identity export key"
CTX_KKV_POW: Final = "ParanoIM 2026-11 kkv challenge work"
CTX_KKV_SESSION_KEY: Final = "ParanoIM 2026-11 kkv session key"
CTX_KKV_SESSION_NONCE: Final = "ParanoIM 2026-11 kkv session nonce"
# Sessions: hybrid handshake and double ratchet (docs/sessions.md).
CTX_PREKEY_ID: Final = "ParanoIM 2026-12 prekey id"
CTX_HANDSHAKE_IDENTITY_KEY: Final = "ParanoIM 2026-12 handshake identity key"
CTX_HANDSHAKE_IDENTITY_NONCE: Final = "ParanoIM 2026-12 handshake identity nonce"
CTX_HANDSHAKE_TRANSCRIPT: Final = "ParanoIM 2026-12 handshake transcript"
CTX_HANDSHAKE_SECRET: Final = "ParanoIM 2026-12 handshake secret"  # noqa: S105 (a context label)
CTX_SESSION_ID: Final = "ParanoIM 2026-12 session id"
CTX_SESSION_ROOT: Final = "ParanoIM 2026-12 session first root key"
CTX_SESSION_HEADER_INITIATOR: Final = "ParanoIM 2026-12 session initiator header key"
CTX_SESSION_HEADER_RESPONDER: Final = "ParanoIM 2026-12 session responder header key"
CTX_RATCHET_ROOT: Final = "ParanoIM 2026-12 ratchet root step"
CTX_RATCHET_CHAIN: Final = "ParanoIM 2026-12 ratchet chain key"
CTX_RATCHET_MESSAGE: Final = "ParanoIM 2026-12 ratchet message key"
CTX_RATCHET_BODY_NONCE: Final = "ParanoIM 2026-12 ratchet body nonce"
CTX_RATCHET_HEADER_NONCE: Final = "ParanoIM 2026-12 ratchet header nonce"
# Stamps: proof of work minted before the text is written (docs/stamps.md).
CTX_STAMP_DIGEST: Final = "ParanoIM 2026-12 stamp digest"
CTX_STAMP_ID: Final = "ParanoIM 2026-12 stamped envelope id"
CTX_PAIR_TAG_TO: Final = "ParanoIM 2026-12 pair tag to"
CTX_SHARD_KEY: Final = "ParanoIM 2026-12 shard key"  # a recipient's 16 bits (docs/sharding.md)

# The message archive kept on disk with --storage sqlite (bridge/store/archive.py).
CTX_ARCHIVE_OWNER: Final = "ParanoIM 2026-12 archive owner"
CTX_ARCHIVE_ROW: Final = "ParanoIM 2026-12 archive row"
# Domain tags that prefix signed messages (not key derivation contexts).
SIG_ENVELOPE: Final = b"ParanoIM 2026-11 envelope signature\x00"
SIG_PREKEY: Final = b"ParanoIM 2026-11 signed prekey\x00"
SIG_KKV_CHALLENGE: Final = b"ParanoIM 2026-11 kkv challenge\x00"
SIG_KKV_EXCHANGE: Final = b"ParanoIM 2026-11 kkv exchange request\x00"
SIG_KKV_SESSION: Final = b"ParanoIM 2026-11 kkv session offer\x00"
SIG_KKV_MESSAGE: Final = b"ParanoIM 2026-11 kkv message\x00"
SIG_HYBRID_PREKEY: Final = b"ParanoIM 2026-12 signed hybrid prekey\x00"
SIG_ONE_TIME_PREKEY: Final = b"ParanoIM 2026-12 one-time prekey\x00"
SIG_STAMP: Final = b"ParanoIM 2026-12 stamp signature\x00"


def _need(value: bytes, size: int, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        raise LocalProtocolError(f"{what} must be {size} bytes")


def derive(context: str, material: bytes, length: int = 32) -> bytes:
    """blake3 derive_key mode: a key for one purpose from secret material."""
    out: bytes = blake3.blake3(material, derive_key_context=context).digest(length=length)
    return out


def hash32(data: bytes) -> bytes:
    out: bytes = blake3.blake3(data).digest()
    return out


# --- Ed25519 -------------------------------------------------------------------


def check_ed25519_public(pub: bytes) -> None:
    """Refuse small-order, non-canonical and off-curve Ed25519 public keys."""
    _need(pub, KEY_SIZE, "Ed25519 public key")
    _check_point(bytes(pub))


@functools.lru_cache(maxsize=4096)
def _check_point(pub: bytes) -> None:
    # The full point check costs about 30 µs, as much as a signature check, and the
    # same few keys (our identities, our contacts) are checked on every message.
    # Only keys that pass are remembered: a failure raises, and lru_cache keeps no
    # exception.
    if not sodium.crypto_core_ed25519_is_valid_point(pub):
        raise WeakKeyError("Ed25519 public key is small-order, non-canonical or not on the curve")


def ed25519_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """(public key, 64-byte libsodium secret key) from a 32-byte seed."""
    _need(seed, KEY_SIZE, "Ed25519 seed")
    pub, sk = sodium.crypto_sign_seed_keypair(seed)
    return bytes(pub), bytes(sk)


def ed25519_public(seed: bytes) -> bytes:
    return ed25519_keypair(seed)[0]


def sign(secret_key: bytes, message: bytes) -> bytes:
    _need(secret_key, 64, "Ed25519 secret key")
    signed: bytes = sodium.crypto_sign(message, secret_key)
    return signed[:SIGNATURE_SIZE]


def verify(pub: bytes, message: bytes, signature: bytes) -> None:
    """Raise BadSignatureError unless ``signature`` is ``pub``'s over ``message``."""
    _need(pub, KEY_SIZE, "Ed25519 public key")
    if len(signature) != SIGNATURE_SIZE:
        raise BadSignatureError("signature has the wrong length")
    try:
        sodium.crypto_sign_open(signature + message, pub)
    except nacl.exceptions.BadSignatureError as exc:
        raise BadSignatureError("signature does not verify") from exc


# --- X25519 --------------------------------------------------------------------


def x25519_public(secret: bytes) -> bytes:
    _need(secret, KEY_SIZE, "X25519 secret key")
    out: bytes = sodium.crypto_scalarmult_base(secret)
    return out


def x25519(secret: bytes, public: bytes) -> bytes:
    """Diffie-Hellman; a low-order peer key (all-zero result) is a WeakKeyError."""
    _need(secret, KEY_SIZE, "X25519 secret key")
    _need(public, KEY_SIZE, "X25519 public key")
    try:
        shared: bytes = sodium.crypto_scalarmult(secret, public)
    except (RuntimeError, nacl.exceptions.CryptoError) as exc:
        raise WeakKeyError("X25519 public key is a low-order point") from exc
    if hmac.compare_digest(shared, bytes(KEY_SIZE)):
        raise WeakKeyError("X25519 public key is a low-order point")
    return shared


@functools.lru_cache(maxsize=4096)
def ed25519_to_x25519_public(pub: bytes) -> bytes:
    """Cached: a pure function of public data, validated on first use (only
    successes are cached; a weak key raises every time)."""
    check_ed25519_public(pub)
    out: bytes = sodium.crypto_sign_ed25519_pk_to_curve25519(pub)
    return out


def ed25519_to_x25519_secret(secret_key: bytes) -> bytes:
    _need(secret_key, 64, "Ed25519 secret key")
    out: bytes = sodium.crypto_sign_ed25519_sk_to_curve25519(secret_key)
    return out


# --- AEAD ----------------------------------------------------------------------


def aead_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    _need(key, KEY_SIZE, "AEAD key")
    _need(nonce, AEAD_NONCE_SIZE, "AEAD nonce")
    out: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, aad, nonce, key)
    return out


def aead_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
    _need(key, KEY_SIZE, "AEAD key")
    _need(nonce, AEAD_NONCE_SIZE, "AEAD nonce")
    try:
        out: bytes = sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, aad, nonce, key)
    except nacl.exceptions.CryptoError as exc:
        raise DecryptionError("ciphertext does not authenticate") from exc
    return out


def equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for secrets and authenticators."""
    return hmac.compare_digest(a, b)
