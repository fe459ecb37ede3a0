"""Identities and their signed prekeys.

An identity is an Ed25519 key pair made from a 32-byte seed; its address is the
public key. A prekey is a short-lived X25519 key the identity signs and
publishes; senders seal to the newest prekey they know, so once a prekey's
private half is deleted, what was sealed to it cannot be opened even with the
identity key. A first contact, who knows only the address, seals to the X25519
form of the identity key.

    signed prekey (104 bytes) = x25519 public[32] ‖ expires u64[8] ‖ signature[64]
    signature over SIG_PREKEY ‖ identity public ‖ x25519 public ‖ expires
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeVar

from bridge.core import crypto
from bridge.core.address import encode_address, fingerprint
from bridge.core.errors import (
    BadSignatureError,
    ExpiredError,
    NonCanonicalError,
    RemoteProtocolError,
    TruncatedError,
)

PREKEY_SIZE: Final = 104
PREKEY_LIFETIME: Final = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Identity:
    seed: bytes = field(repr=False)
    public: bytes
    secret_key: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        pub, sk = crypto.ed25519_keypair(seed)
        return cls(seed=bytes(seed), public=pub, secret_key=sk)

    @property
    def address(self) -> str:
        return encode_address(self.public)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    @property
    def x25519_secret(self) -> bytes:
        return crypto.ed25519_to_x25519_secret(self.secret_key)

    @property
    def x25519_public(self) -> bytes:
        return crypto.ed25519_to_x25519_public(self.public)

    def sign(self, message: bytes) -> bytes:
        return crypto.sign(self.secret_key, message)


@dataclass(frozen=True, slots=True)
class SignedPrekey:
    public: bytes
    expires: int
    signature: bytes

    def encode(self) -> bytes:
        return self.public + struct.pack(">Q", self.expires) + self.signature

    @classmethod
    def parse(cls, data: bytes) -> SignedPrekey:
        if len(data) < PREKEY_SIZE:
            raise TruncatedError(f"signed prekey must be {PREKEY_SIZE} bytes")
        if len(data) > PREKEY_SIZE:
            raise NonCanonicalError(f"signed prekey must be {PREKEY_SIZE} bytes")
        (expires,) = struct.unpack_from(">Q", data, 32)
        return cls(public=bytes(data[:32]), expires=expires, signature=bytes(data[40:]))

    def verify(self, identity_public: bytes, now: int) -> None:
        """Raise unless the identity signed this prekey and it is still valid (the
        free expiry test first)."""
        if self.expires <= now:
            raise ExpiredError("the contact's prekey has expired")
        _check_prekey_signature(bytes(identity_public), self)


def _prekey_message(identity_public: bytes, public: bytes, expires: int) -> bytes:
    return crypto.SIG_PREKEY + identity_public + public + struct.pack(">Q", expires)


@functools.lru_cache(maxsize=1024)
def _check_prekey_signature(identity_public: bytes, prekey: SignedPrekey) -> None:
    # Every message carries the sender's current prekey, the same one for days: its
    # signature is checked once. Only signatures that verify are remembered.
    crypto.verify(identity_public, _prekey_message(identity_public, prekey.public,
                                                   prekey.expires), prekey.signature)


_SIGNED: dict[tuple[bytes, bytes, int], bytes] = {}  # (identity, prekey, expires) -> signature
_SIGNED_MAX = 256


def make_prekey(identity: Identity, secret: bytes, expires: int) -> SignedPrekey:
    """Sign the X25519 key made from ``secret`` (32 random bytes from the caller).

    The signature is remembered: the current prekey goes inside every message, and
    Ed25519 signing is deterministic, so a remembered signature is the one signing
    again would give. Only public values are kept (no identity, no secret)."""
    public = crypto.x25519_public(secret)
    key = (identity.public, public, expires)
    sig = _SIGNED.get(key)
    if sig is None:
        sig = identity.sign(_prekey_message(identity.public, public, expires))
        if len(_SIGNED) >= _SIGNED_MAX:
            del _SIGNED[next(iter(_SIGNED))]
        _SIGNED[key] = sig
    return SignedPrekey(public=public, expires=expires, signature=sig)


def verified_prekey(identity_public: bytes, prekey: SignedPrekey, now: int) -> bytes:
    """The prekey's X25519 public key after checking its signature and expiry."""
    try:
        prekey.verify(identity_public, now)
    except BadSignatureError as exc:
        raise BadSignatureError("prekey is not signed by this identity") from exc
    return prekey.public


class _Prekey(Protocol):
    @property
    def expires(self) -> int: ...
    def verify(self, identity_public: bytes, now: int) -> None: ...


P = TypeVar("P", bound=_Prekey)


def newest_valid(current: P | None, offered: Iterable[P], identity_public: bytes,
                 now: int) -> P | None:
    """The newest of ``current`` and those ``offered`` prekeys that verify under
    ``identity_public`` at ``now`` (any kind of signed prekey; bad ones are skipped)."""
    best = current
    for pk in offered:
        try:
            pk.verify(identity_public, now)
        except RemoteProtocolError:
            continue
        if best is None or pk.expires > best.expires:
            best = pk
    return best
