"""ML-KEM-768 (FIPS 203), from ``cryptography``, behind small functions with checked sizes.

Key pairs come from a 64-byte seed (FIPS 203 ``d ‖ z``) the caller draws, as every
other key in the core does. Encapsulation is the one operation here that draws its
own randomness: the library gives no way to pass it in. So the pure handshake never
calls it; it takes a ``Encapsulated`` value (ciphertext, shared secret) made by
``encapsulate`` in the caller, and the known-answer vectors check decapsulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.primitives.asymmetric import mlkem

from bridge.core.errors import LocalProtocolError, MalformedError, WeakKeyError

SEED_SIZE: Final = 64
PUBLIC_SIZE: Final = 1184
CIPHERTEXT_SIZE: Final = 1088
SHARED_SIZE: Final = 32


@dataclass(frozen=True, slots=True)
class Encapsulated:
    ciphertext: bytes
    shared: bytes = field(repr=False)


def _private(seed: bytes) -> mlkem.MLKEM768PrivateKey:
    if not isinstance(seed, bytes | bytearray) or len(seed) != SEED_SIZE:
        raise LocalProtocolError(f"ML-KEM-768 seed must be {SEED_SIZE} bytes")
    return mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(seed))


def public_from_seed(seed: bytes) -> bytes:
    """The 1184-byte encapsulation key of the key pair made from ``seed``."""
    out: bytes = _private(seed).public_key().public_bytes_raw()
    return out


def check_public(public: bytes) -> None:
    """Refuse an encapsulation key of the wrong size or failing FIPS 203's modulus check."""
    if len(public) != PUBLIC_SIZE:
        raise MalformedError(f"ML-KEM-768 public key must be {PUBLIC_SIZE} bytes")
    try:
        mlkem.MLKEM768PublicKey.from_public_bytes(bytes(public))
    except ValueError as exc:
        raise WeakKeyError("ML-KEM-768 public key fails the modulus check") from exc


def encapsulate(public: bytes) -> Encapsulated:
    """A fresh (ciphertext, shared secret) for ``public``. Draws OS randomness."""
    check_public(public)
    key = mlkem.MLKEM768PublicKey.from_public_bytes(bytes(public))
    shared, ct = key.encapsulate()
    return Encapsulated(ciphertext=ct, shared=shared)


def decapsulate(seed: bytes, ciphertext: bytes) -> bytes:
    """The shared secret. A wrong ciphertext gives an unrelated secret (implicit
    rejection, FIPS 203); it is caught later, when the AEAD fails."""
    if len(ciphertext) != CIPHERTEXT_SIZE:
        raise MalformedError(f"ML-KEM-768 ciphertext must be {CIPHERTEXT_SIZE} bytes")
    out: bytes = _private(seed).decapsulate(bytes(ciphertext))
    return out
