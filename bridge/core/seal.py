"""Sealing and opening envelopes.

Seal (sender S, recipient R with Ed25519 key R_pub and X25519 key R_kex):

    e, E     = fresh X25519 key pair (secret passed in by the caller)
    shared   = X25519(e, R_kex)                   (low-order R_kex refused)
    material = E ‖ R_kex ‖ shared
    key      = derive(CTX_SEAL_KEY, material)     nonce = derive(CTX_SEAL_NONCE, material)[:24]
    inner    = S_pub[32] ‖ R_pub[32] ‖ sig[64] ‖ payload
    sig      = Ed25519_S(SIG_ENVELOPE ‖ R_pub ‖ header[26] ‖ E ‖ S_pub ‖ payload)
    ct       = XChaCha20-Poly1305(key, nonce, pad(inner), aad = header[26] ‖ E)

The sender travels inside the ciphertext, so relays see no sender. The
signature binds the recipient and the outer header: the recipient can show the
signed record to a third party as proof of authorship (non-repudiation, stated
in the threat model), but cannot re-address it to someone else — the stated
recipient would not match (ReaddressedError), and changing it breaks the
signature (BadSignatureError).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.core import crypto
from bridge.core.envelope import (
    MAX_PLAINTEXT,
    VERSION,
    Envelope,
    Kind,
    assemble,
    pad,
    signed_header,
    unpad,
)
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    LocalProtocolError,
    ReaddressedError,
    UnknownVersionError,
)
from bridge.core.reader import Reader

INNER_OVERHEAD = 32 + 32 + crypto.SIGNATURE_SIZE
MAX_PAYLOAD = MAX_PLAINTEXT - INNER_OVERHEAD


@dataclass(frozen=True, slots=True)
class Opened:
    """What the recipient learns from an envelope it could open."""

    kind: Kind
    sender: bytes  # Ed25519 public key, proved by the signature
    recipient: bytes
    payload: bytes
    key_index: int  # which of the offered X25519 secrets opened it
    signature: bytes

    def proof_message(self, env: Envelope) -> bytes:
        """The exact bytes the sender signed, for showing authorship to a third party."""
        return signed_message(self.recipient, env.signed_header, env.ephemeral,
                               self.sender, self.payload)


def signed_message(recipient: bytes, header: bytes, ephemeral: bytes, sender: bytes,
                    payload: bytes) -> bytes:
    return crypto.SIG_ENVELOPE + recipient + header + ephemeral + sender + payload


def seal_keys(ephemeral: bytes, kex_public: bytes, shared: bytes) -> tuple[bytes, bytes]:
    material = ephemeral + kex_public + shared
    return (crypto.derive(crypto.CTX_SEAL_KEY, material),
            crypto.derive(crypto.CTX_SEAL_NONCE, material, crypto.AEAD_NONCE_SIZE))


def sign_inner(sender_secret_key: bytes, sender: bytes, recipient: bytes, header: bytes,
               ephemeral: bytes, payload: bytes) -> bytes:
    """The inner record (before padding): sender ‖ recipient ‖ signature ‖ payload."""
    sig = crypto.sign(sender_secret_key,
                      signed_message(recipient, header, ephemeral, sender, payload))
    return sender + recipient + sig + payload


def seal_inner(inner: bytes, header: bytes, ephemeral_secret: bytes, kex_public: bytes,
               *, ephemeral: bytes | None = None) -> bytes:
    """Encrypt an inner record to ``kex_public``; the raw envelope with nonce 0.
    ``ephemeral`` is X25519(ephemeral_secret, 9) if the caller already has it."""
    if ephemeral is None:
        ephemeral = crypto.x25519_public(ephemeral_secret)
    shared = crypto.x25519(ephemeral_secret, kex_public)
    key, nonce = seal_keys(ephemeral, kex_public, shared)
    ct = crypto.aead_encrypt(key, nonce, pad(inner), header + ephemeral)
    return assemble(header, ephemeral, ct)


def seal(
    *,
    sender_secret_key: bytes,
    sender: bytes,
    recipient: bytes,
    kex_public: bytes,
    kind: Kind,
    tag: bytes,
    expiry: int,
    payload: bytes,
    ephemeral_secret: bytes,
) -> bytes:
    """A sealed envelope (nonce 0: stamp it with proof of work afterwards)."""
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if len(recipient) != 32:
        raise LocalProtocolError("recipient must be a 32-byte key")
    header = signed_header(kind, tag, expiry)
    ephemeral = crypto.x25519_public(ephemeral_secret)
    inner = sign_inner(sender_secret_key, sender, recipient, header, ephemeral, payload)
    return seal_inner(inner, header, ephemeral_secret, kex_public, ephemeral=ephemeral)


KexKey = bytes | tuple[bytes, bytes]
"""An X25519 secret, or a (secret, public) pair: the pair spares a base-point
multiplication per envelope (a fifth of the cost of opening one)."""


def kex_key(secret: bytes) -> tuple[bytes, bytes]:
    """The (secret, public) pair for ``secret``, to hand to open_envelope."""
    return bytes(secret), crypto.x25519_public(secret)


@functools.lru_cache(maxsize=4096)
def _check_sender(sender: bytes) -> None:
    # Full point validation (subgroup check included) costs as much as the
    # signature check; senders repeat, and a public key's validity never
    # changes. Only keys that passed are cached: a failure raises, and
    # lru_cache does not store exceptions.
    crypto.check_ed25519_public(sender)


def open_envelope(env: Envelope, recipient: bytes, kex_secrets: Sequence[KexKey]) -> Opened:
    """Decrypt and verify an envelope addressed to ``recipient``.

    ``kex_secrets`` are the X25519 secrets that may have been sealed to (current
    and previous prekeys, then the identity's own), each either bare or as a
    (secret, public) pair from kex_key(); the first that authenticates wins. A
    low-order ephemeral key is refused before any of them. Only version 1 is
    sealed this way; a version-2 envelope is the session layer's to open.
    """
    if env.version != VERSION:
        raise UnknownVersionError(f"a version-{env.version} envelope is not opened here")
    aad = env.signed_header + env.ephemeral
    padded = None
    index = -1
    for i, item in enumerate(kex_secrets):
        if isinstance(item, tuple):
            secret, public = item
        else:
            secret, public = item, crypto.x25519_public(item)
        shared = crypto.x25519(secret, env.ephemeral)  # WeakKeyError on low order
        key, nonce = seal_keys(env.ephemeral, public, shared)
        try:
            padded = crypto.aead_decrypt(key, nonce, env.ciphertext, aad)
        except DecryptionError:
            continue
        index = i
        break
    if padded is None:
        raise DecryptionError("envelope does not open with any of our keys")
    r = Reader(unpad(padded))
    sender = r.take(32)
    stated_recipient = r.take(32)
    sig = r.take(crypto.SIGNATURE_SIZE)
    payload = r.rest()
    # cheapest first: a byte comparison, then the (cached) key check, then the signature
    if not crypto.equal(stated_recipient, recipient):
        raise ReaddressedError("the signed record names another recipient: it was re-sealed")
    _check_sender(sender)
    try:
        crypto.verify(sender, signed_message(recipient, env.signed_header, env.ephemeral,
                                              sender, payload), sig)
    except BadSignatureError as exc:
        raise BadSignatureError("the sender's signature does not verify") from exc
    return Opened(kind=env.kind, sender=sender, recipient=recipient, payload=payload,
                  key_index=index, signature=sig)
