"""Version-2 envelope bodies: what goes under the stamp (docs/stamps.md,
docs/sessions.md §11).

A version-2 envelope is ``head[26] ‖ nonce ‖ K[32] ‖ stamp signature[64] ‖ body``,
the body ``b + 16`` bytes for a padding bucket ``b`` (``envelope.py``). Two bodies:

- **session body** (direct messages and receipts between contacts)::

      form u8 ‖ [handshake block, if form = 1] ‖ ratchet header[80] ‖ ratchet body
      ratchet body = the padded inner record, encrypted in the contact's session
      the data both bind ("outer") = head ‖ K ‖ form ‖ [handshake block]

- **sealed body** (rooms, announcements, and a contact request sent before any
  session exists), version 1's sealing (envelope.md §6) with the stamp key bound::

      E[32] ‖ XChaCha20-Poly1305(key, nonce, padded inner record, aad = head ‖ K ‖ E)
      key, nonce as envelope.md §6 from E, the key sealed to, and their X25519

In both the inner record is version 1's (envelope.md §5) with ``K`` in place of the
ephemeral key in what the sender signs::

    inner  = sender[32] ‖ recipient[32] ‖ signature[64] ‖ payload
    signed = SIG_ENVELOPE ‖ recipient ‖ head[26] ‖ K ‖ sender ‖ payload

and is padded (ISO/IEC 7816-4) to exactly the room the bucket leaves; the bucket
must be the smallest that holds it (one encoding per message).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from bridge.core import crypto
from bridge.core.envelope import (
    VERSION_STAMPED,
    Envelope,
    Kind,
    assemble_stamped,
    signed_header,
)
from bridge.core.errors import (
    BadSignatureError,
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    NonCanonicalError,
    ReaddressedError,
    SessionError,
    TruncatedError,
    UnknownPrekeyError,
    UnknownVersionError,
)
from bridge.core.handshake import INIT_SIZE, HybridPrekey, InitBlock, respond
from bridge.core.identity import Identity
from bridge.core.ratchet import CLOCK_SKEW, Decrypted, decrypt
from bridge.core.ratchet import HEADER_SIZE as RATCHET_HEADER
from bridge.core.seal import seal_keys, sign_inner, signed_message
from bridge.core.sessions import (
    Outcome,
    Peer,
    adopt,
    cap_keys,
    receive,
    responder_session,
    send,
)
from bridge.core.stamp import BUCKETS, Stamp

INNER_OVERHEAD: Final = 32 + 32 + crypto.SIGNATURE_SIZE  # sender, recipient, signature
SEALED_OVERHEAD: Final = 32  # E
SESSION_OVERHEAD: Final = 1 + RATCHET_HEADER  # form, ratchet header
FORM_MESSAGE: Final = 0
FORM_HANDSHAKE: Final = 1


class TooLargeError(LocalProtocolError):
    """The payload does not fit in the largest envelope; ``limit``: what would."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Opened:
    """What the recipient learns from a version-2 envelope it could open."""

    kind: Kind
    sender: bytes  # Ed25519 public key, proved by the signature
    recipient: bytes
    payload: bytes
    signature: bytes

    def proof_message(self, env: Envelope) -> bytes:
        """The exact bytes the sender signed, for showing authorship to a third party."""
        return signed_message(self.recipient, env.signed_header, env.stamp_key, self.sender,
                              self.payload)


@dataclass(frozen=True, slots=True)
class SessionOpened:
    opened: Opened
    peer: Peer  # the contact's sessions after this message: store before showing it
    decrypted: Decrypted  # number, new_chain, dropped (keys given up)
    outcome: Outcome | None  # for a handshake: what it did to the contact's sessions


# --- sizes and padding -------------------------------------------------------------------


def _bucket(inner_len: int, overhead: int) -> int:
    for b in BUCKETS:
        if inner_len + 1 <= b - overhead:
            return b
    raise TooLargeError(f"a payload of {inner_len - INNER_OVERHEAD} bytes is too large: "
                        f"at most {max_payload(overhead)} fit", max_payload(overhead))


def max_payload(overhead: int) -> int:
    """The largest payload the largest bucket holds, after ``overhead``."""
    return BUCKETS[-1] - overhead - 1 - INNER_OVERHEAD


def sealed_bucket(payload_len: int) -> int:
    """The size class a sealed body of ``payload_len`` bytes of payload takes."""
    return _bucket(INNER_OVERHEAD + payload_len, SEALED_OVERHEAD)


def session_bucket(payload_len: int, handshake: bool) -> int:
    """The size class a session body takes (a handshake block needs 1194 bytes more)."""
    return _bucket(INNER_OVERHEAD + payload_len, SESSION_OVERHEAD + (INIT_SIZE if handshake else 0))


def _pad_to(inner: bytes, length: int) -> bytes:
    return inner + b"\x80" + bytes(length - len(inner) - 1)


def _unpad(padded: bytes, bucket: int, overhead: int) -> bytes:
    end = len(padded.rstrip(b"\x00"))
    if end == 0 or padded[end - 1] != 0x80:
        raise NonCanonicalError("the inner record's padding is malformed")
    inner = padded[: end - 1]
    if _bucket(len(inner), overhead) != bucket:
        raise NonCanonicalError("the inner record is padded to a larger size class than needed")
    return inner


# --- the inner record --------------------------------------------------------------------


def _inner(sender: Identity, recipient: bytes, head: bytes, stamp_key: bytes,
           payload: bytes) -> bytes:
    """Version 1's inner record (``seal.sign_inner``), the stamp key where the
    ephemeral key was."""
    return sign_inner(sender.secret_key, sender.public, recipient, head, stamp_key, payload)


def _check_inner(env: Envelope, inner: bytes, recipient: bytes) -> Opened:
    if len(inner) < INNER_OVERHEAD:
        raise TruncatedError("the inner record is shorter than its fixed fields")
    sender, stated, sig, payload = inner[:32], inner[32:64], inner[64:128], inner[128:]
    if not crypto.equal(stated, recipient):
        raise ReaddressedError("the signed recipient is not the one this was sealed to")
    crypto.check_ed25519_public(sender)
    crypto.verify(sender, signed_message(stated, env.signed_header, env.stamp_key, sender,
                                          payload), sig)
    return Opened(env.kind, sender, stated, payload, sig)


def _head(kind: Kind, tag: bytes, stamp: Stamp) -> bytes:
    return signed_header(kind, tag, stamp.expiry, version=VERSION_STAMPED)


def _stamped(env: Envelope) -> None:
    if env.version != VERSION_STAMPED:
        raise UnknownVersionError(f"a version-{env.version} envelope has no version-2 body")


# --- sealed bodies -----------------------------------------------------------------------


def seal_sealed(*, sender: Identity, recipient: bytes, kex_public: bytes, kind: Kind, tag: bytes,
                stamp: Stamp, payload: bytes, ephemeral_secret: bytes) -> bytes:
    """A whole version-2 envelope with a sealed body, spending ``stamp``."""
    if stamp.bucket != sealed_bucket(len(payload)):
        raise LocalProtocolError(f"this payload needs a {sealed_bucket(len(payload))}-byte "
                                 f"stamp, not a {stamp.bucket}-byte one")
    head = _head(kind, tag, stamp)
    e_pub = crypto.x25519_public(ephemeral_secret)
    key, nonce = seal_keys(e_pub, kex_public, crypto.x25519(ephemeral_secret, kex_public))
    padded = _pad_to(_inner(sender, recipient, head, stamp.public, payload),
                     stamp.bucket - SEALED_OVERHEAD)
    ct = crypto.aead_encrypt(key, nonce, padded, head + stamp.public + e_pub)
    return assemble_stamped(head, stamp, e_pub + ct)


def open_sealed(env: Envelope, recipient: bytes, kex_secrets: Sequence[bytes]) -> Opened:
    """Open a sealed body with the first of ``kex_secrets`` that authenticates."""
    _stamped(env)
    body = env.ciphertext
    e_pub, ct = body[:SEALED_OVERHEAD], body[SEALED_OVERHEAD:]
    aad = env.signed_header + env.stamp_key + e_pub
    for secret in kex_secrets:
        shared = crypto.x25519(secret, e_pub)  # WeakKeyError on a low-order E
        key, nonce = seal_keys(e_pub, crypto.x25519_public(secret), shared)
        try:
            padded = crypto.aead_decrypt(key, nonce, ct, aad)
        except DecryptionError:
            continue
        bucket = len(body) - crypto.AEAD_TAG_SIZE
        return _check_inner(env, _unpad(padded, bucket, SEALED_OVERHEAD), recipient)
    raise DecryptionError("none of the keys offered opens this envelope")


# --- session bodies ----------------------------------------------------------------------


def seal_session(*, sender: Identity, recipient: bytes, kind: Kind, tag: bytes, stamp: Stamp,
                 peer: Peer, payload: bytes, ratchet_secret: bytes) -> tuple[bytes, Peer, bool]:
    """A whole version-2 envelope in the contact's active session, spending ``stamp``.
    Returns (envelope, the contact's sessions after it, persist): when ``persist``,
    store the sessions durably before the envelope leaves (docs/sessions.md §7.3)."""
    if kind not in (Kind.DIRECT, Kind.RECEIPT):
        raise LocalProtocolError("only direct messages and receipts travel in a session")
    session = peer.active
    if session is None:
        raise LocalProtocolError("no session with this contact: start one")
    init = session.init or b""
    if stamp.bucket != session_bucket(len(payload), bool(init)):
        raise LocalProtocolError(f"this message needs a {session_bucket(len(payload), bool(init))}"
                                 f"-byte stamp, not a {stamp.bucket}-byte one")
    head = _head(kind, tag, stamp)
    form = bytes([FORM_HANDSHAKE if init else FORM_MESSAGE])
    outer = head + stamp.public + form + init
    padded = _pad_to(_inner(sender, recipient, head, stamp.public, payload),
                     stamp.bucket - SESSION_OVERHEAD - len(init))
    after, out = send(peer, padded, outer, ratchet_secret)
    if (out.init or b"") != init:
        raise LocalProtocolError("the session's handshake block changed while sending")
    return assemble_stamped(head, stamp, form + init + out.header + out.body), after, out.persist


@dataclass(frozen=True, slots=True)
class _Parts:
    form: int
    init: bytes
    header: bytes
    ciphertext: bytes
    outer: bytes
    bucket: int

    @property
    def overhead(self) -> int:
        return SESSION_OVERHEAD + len(self.init)


def _session_parts(env: Envelope) -> _Parts:
    _stamped(env)
    body = env.ciphertext
    form = body[0]
    if form not in (FORM_MESSAGE, FORM_HANDSHAKE):
        raise NonCanonicalError(f"unknown session body form {form}")
    init = body[1:1 + INIT_SIZE] if form == FORM_HANDSHAKE else b""
    rest = body[1 + len(init):]
    if len(rest) < RATCHET_HEADER + crypto.AEAD_TAG_SIZE + 1:
        raise TruncatedError("a session body too short for its handshake block")
    outer = env.signed_header + env.stamp_key + body[:1 + len(init)]
    return _Parts(form, init, rest[:RATCHET_HEADER], rest[RATCHET_HEADER:], outer,
                  len(body) - crypto.AEAD_TAG_SIZE)


def handshake_of(env: Envelope) -> InitBlock | None:
    """The handshake block a session body carries, if any (no cryptography)."""
    parts = _session_parts(env)
    return InitBlock.parse(parts.init) if parts.init else None


def _finish(env: Envelope, me: Identity, parts: _Parts, dec: Decrypted) -> Opened:
    inner = _unpad(dec.plaintext, parts.bucket, parts.overhead)
    opened = _check_inner(env, inner, me.public)
    ad = dec.state.ad
    contact = ad[:32] if crypto.equal(ad[32:], me.public) else ad[32:]
    if not crypto.equal(opened.sender, contact):
        raise BadSignatureError("a message in this session signed by someone else")
    return opened


def open_session(env: Envelope, me: Identity, peer: Peer, now: int) -> SessionOpened:
    """Open a message in one of the contact's sessions (found by the pair tag, or by
    the handshake's session id). UnknownSessionError if none opens it; the contact's
    sessions are unchanged on any error."""
    if env.kind not in (Kind.DIRECT, Kind.RECEIPT):
        raise SessionError(f"a {env.kind.name.lower()} envelope in a session body")
    parts = _session_parts(env)
    after, dec = receive(peer, parts.header, parts.ciphertext, parts.outer, now)
    return SessionOpened(_finish(env, me, parts, dec), after, dec, None)


PrekeyLookup = Callable[[bytes], "tuple[HybridPrekey, bytes, bytes] | None"]
"""prekey id -> (the signed hybrid prekey, its X25519 secret, its ML-KEM seed)."""


def open_handshake(env: Envelope, me: Identity, prekeys: PrekeyLookup, now: int, *,
                   peer_for: Callable[[bytes], Peer], known: Peer | None = None) -> SessionOpened:
    """Open the first message of a session a contact (or a stranger) started: answer
    the handshake with the prekey it names, open the message, and take the session in
    among the initiator's (``peer_for(initiator key)``, ``sessions.adopt``).
    ``known``: sessions that may hold this one already (the contact a pair tag names),
    tried first, without the cost of answering the handshake again."""
    if env.kind not in (Kind.DIRECT, Kind.RECEIPT):
        raise SessionError(f"a {env.kind.name.lower()} envelope in a session body")
    parts = _session_parts(env)
    if not parts.init:
        raise SessionError("no handshake in this message")
    block = InitBlock.parse(parts.init)
    if block.created > now + CLOCK_SKEW:
        # sessions.adopt orders handshakes by this time: one from the future would
        # outrank every honest restart of the contact's for as long as it is ahead
        raise SessionError("a handshake made in the future (the sender's clock is wrong)")
    session_id = crypto.derive(crypto.CTX_SESSION_ID, parts.init)
    if known is not None:
        held = _held(env, me, parts, known, session_id, now)
        if held is not None:
            return held
    found = prekeys(block.prekey_id)
    if found is None:
        raise UnknownPrekeyError("the handshake names a prekey we do not hold (any more)")
    prekey, x_secret, kem_seed = found
    hs = respond(identity=me, block=block, prekey=prekey, prekey_secret=x_secret,
                 kem_seed=kem_seed)
    peer = peer_for(hs.initiator)
    held = _held(env, me, parts, peer, session_id, now)
    if held is not None:
        return held
    dec = decrypt(responder_session(hs, x_secret), parts.header, parts.ciphertext, parts.outer,
                  now)
    opened = _finish(env, me, parts, dec)
    adopted, outcome = adopt(peer, dec.state, now, restart=block.restart)
    after, dropped = cap_keys(adopted)
    return SessionOpened(opened, after, dataclasses.replace(dec, dropped=dec.dropped + dropped),
                         outcome)


def _held(env: Envelope, me: Identity, parts: _Parts, peer: Peer, session_id: bytes,
          now: int) -> SessionOpened | None:
    """A handshake message of a session ``peer`` holds (or closed), opened in it."""
    if peer.is_closed(session_id):
        raise DuplicateMessageError("the handshake of a session closed before: a replay")
    if peer.find(session_id) is None:
        return None
    after, dec = receive(peer, parts.header, parts.ciphertext, parts.outer, now)
    return SessionOpened(_finish(env, me, parts, dec), after, dec, Outcome.SAME)


__all__ = ["FORM_HANDSHAKE", "FORM_MESSAGE", "Opened", "SessionOpened", "handshake_of",
           "open_handshake", "open_sealed", "open_session", "seal_sealed", "seal_session",
           "sealed_bucket", "session_bucket"]
