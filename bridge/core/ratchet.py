"""The double ratchet with header encryption (docs/sessions.md §5–§8).

Signal's Double Ratchet, header-encryption variant, on this project's primitives:
X25519 for the DH ratchet, BLAKE3 ``derive_key`` for the root and chain steps,
XChaCha20-Poly1305 for headers and bodies. Adapted to a gossip network:

- the sending half of a DH step is taken lazily, at the next ``encrypt``, so
  ``decrypt`` needs no randomness and the new key pair exists only once needed;
- skipped message keys are bounded per step and per chain (``MAX_SKIP``), in all
  (``MAX_STORED_KEYS``, ``MAX_SKIPPED_CHAINS``) and in age (``MAX_KEY_AGE``, the
  longest an envelope lives plus clock skew), and deleted when used;
- the sender reserves message numbers ``RESERVE`` at a time: ``to_bytes`` writes the
  end of the block, so a state reloaded after a crash never reuses a key;
- ``Session`` is immutable: a failed ``decrypt`` leaves the caller's state as it was.

Everything is pure: randomness (one 32-byte secret per ``encrypt``) and the clock are
arguments.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from bridge.core import crypto
from bridge.core.checks import MAX_CLOCK_SKEW, MAX_TTL
from bridge.core.errors import (
    DecryptionError,
    DuplicateMessageError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    OversizeError,
    SessionError,
    TooFarAheadError,
    TruncatedError,
    UnknownSessionError,
    UnknownVersionError,
)
from bridge.core.handshake import INIT_SIZE
from bridge.core.reader import Reader

RESERVE: Final = 32
MAX_SKIP: Final = 1000
MAX_STORED_KEYS: Final = 2000
MAX_SKIPPED_CHAINS: Final = 32
CLOCK_SKEW: Final = MAX_CLOCK_SKEW
MAX_KEY_AGE: Final = MAX_TTL + MAX_CLOCK_SKEW  # a skipped key outlives any envelope
MAX_NUMBER: Final = 2**32 - 1
HEADER_PLAIN_SIZE: Final = 32 + 4 + 4
HEADER_SIZE: Final = crypto.AEAD_NONCE_SIZE + HEADER_PLAIN_SIZE + crypto.AEAD_TAG_SIZE  # 80
MAX_BODY: Final = 1 << 17
AD_SIZE: Final = 64
STATE_VERSION: Final = 1
# INIT_SIZE (handshake.py): the ratchet carries the handshake block as opaque bytes

_F_INITIATOR: Final = 1
_F_CONFIRMED: Final = 2
_F_INIT: Final = 4
_F_DHS: Final = 8
_F_DHR: Final = 16
_F_SEND: Final = 32
_F_RECV: Final = 64
_KEY_ENTRY: Final = 4 + 8 + 32
_CHAIN_HEAD: Final = 32 + 8 + 2
MAX_STATE_SIZE: Final = (2 + 16 + 32 + AD_SIZE + 32 + INIT_SIZE + 32 + 32 + 32 + 8 + 64 + 32
                         + 68 + 1
                         + MAX_SKIPPED_CHAINS * _CHAIN_HEAD + MAX_STORED_KEYS * _KEY_ENTRY)


@dataclass(frozen=True, slots=True)
class SkippedChain:
    """One of the peer's past sending chains (or the current one's skipped keys).

    ``keys`` maps a message number to (message key, unix time it was stored); it is
    never changed in place, only replaced. A chain whose keys are all used or gone is
    kept, empty, until ``ended + MAX_KEY_AGE``: its header key recognises a replay of
    one of its messages as a duplicate rather than as a message of an unknown session.
    """

    header_key: bytes = field(repr=False)
    keys: Mapping[int, tuple[bytes, int]] = field(repr=False)
    ended: int  # when we last stepped past this chain (or first stored keys in it)


@dataclass(frozen=True, slots=True)
class Session:
    session_id: bytes
    ad: bytes
    initiator: bool
    confirmed: bool  # a message from the other side has opened in this session
    created: int  # when the initiator started it (its clock, from the handshake block)
    confirmed_at: int  # when the first message from the other side opened (0: not yet)
    init: bytes | None = field(repr=False)  # sent with every message until confirmed
    root: bytes = field(repr=False)
    dhs_secret: bytes | None = field(repr=False)
    dhs_public: bytes | None
    dhr: bytes | None
    cks: bytes | None = field(repr=False)  # None: the sending half of a DH step is due
    ns: int
    pn: int  # the length of our previous sending chain, sent in every header of this one
    reserved: int  # numbers below this are reserved; to_bytes() resumes here
    ck_reserved: bytes | None = field(repr=False)  # the chain key at number ``reserved``
    hks: bytes | None = field(repr=False)
    nhks: bytes = field(repr=False)
    ckr: bytes | None = field(repr=False)
    nr: int
    hkr: bytes | None = field(repr=False)
    nhkr: bytes = field(repr=False)
    skipped: tuple[SkippedChain, ...] = field(repr=False)  # oldest first
    oldest: int  # the earliest stored_at among skipped keys (0 when there are none)

    @property
    def stored_keys(self) -> int:
        return sum(len(c.keys) for c in self.skipped)

    def to_bytes(self) -> bytes:
        return _encode(self)

    @classmethod
    def from_bytes(cls, data: bytes) -> Session:
        return _decode(data)


@dataclass(frozen=True, slots=True)
class Encrypted:
    state: Session
    header: bytes  # 80 bytes
    body: bytes  # len(plaintext) + 16
    init: bytes | None  # the handshake block to send alongside, until confirmed
    persist: bool  # write state.to_bytes() durably before this message leaves


@dataclass(frozen=True, slots=True)
class Decrypted:
    state: Session
    plaintext: bytes
    number: int  # the message's number in its chain
    new_chain: bool  # this message took a DH ratchet step
    dropped: int  # skipped keys given up (age or count bound) during this call
    header_key: bytes = field(repr=False)  # of the chain the message is in
    message_key: bytes = field(repr=False)  # for ``keep_key``; else forget it


# --- key schedule -----------------------------------------------------------------------


def root_step(root: bytes, dh_out: bytes) -> tuple[bytes, bytes, bytes]:
    """(new root key, chain key, next header key) = derive(RATCHET_ROOT, rk ‖ dh, 96)."""
    out = crypto.derive(crypto.CTX_RATCHET_ROOT, root + dh_out, 96)
    return out[:32], out[32:64], out[64:]


def chain_step(ck: bytes) -> tuple[bytes, bytes]:
    """(message key, next chain key)."""
    return (crypto.derive(crypto.CTX_RATCHET_MESSAGE, ck),
            crypto.derive(crypto.CTX_RATCHET_CHAIN, ck))


def _advance(ck: bytes, steps: int) -> bytes:
    for _ in range(steps):
        ck = crypto.derive(crypto.CTX_RATCHET_CHAIN, ck)
    return ck


def seal_header(hk: bytes, plain: bytes, ad: bytes) -> bytes:
    nonce = crypto.derive(crypto.CTX_RATCHET_HEADER_NONCE, hk + plain, crypto.AEAD_NONCE_SIZE)
    return nonce + crypto.aead_encrypt(hk, nonce, plain, ad)


def open_header(hk: bytes, header: bytes, ad: bytes) -> bytes | None:
    """The header's plaintext, or None if it does not open with ``hk``."""
    nonce = header[:crypto.AEAD_NONCE_SIZE]
    try:
        plain = crypto.aead_decrypt(hk, nonce, header[crypto.AEAD_NONCE_SIZE:], ad)
    except DecryptionError:
        return None
    expected = crypto.derive(crypto.CTX_RATCHET_HEADER_NONCE, hk + plain, crypto.AEAD_NONCE_SIZE)
    if not crypto.equal(nonce, expected):
        raise NonCanonicalError("the header's nonce is not the one derived from it")
    return plain


def _body_nonce(mk: bytes) -> bytes:
    return crypto.derive(crypto.CTX_RATCHET_BODY_NONCE, mk, crypto.AEAD_NONCE_SIZE)


def session_keys(secret: bytes) -> tuple[bytes, bytes, bytes]:
    """(first root key, initiator's header key, responder's first next header key)."""
    return (crypto.derive(crypto.CTX_SESSION_ROOT, secret),
            crypto.derive(crypto.CTX_SESSION_HEADER_INITIATOR, secret),
            crypto.derive(crypto.CTX_SESSION_HEADER_RESPONDER, secret))


# --- starting ------------------------------------------------------------------------------


def _check_start(secret: bytes, ad: bytes, session_id: bytes) -> None:
    if len(secret) != 32 or len(ad) != AD_SIZE or len(session_id) != 32:
        raise LocalProtocolError("session secret, id (32 bytes) and ad (64 bytes) expected")


def start_initiator(*, secret: bytes, ad: bytes, session_id: bytes, init: bytes,
                    their_prekey: bytes, ratchet_secret: bytes, created: int) -> Session:
    """The initiator's session: its first sending chain is ready at once."""
    _check_start(secret, ad, session_id)
    if len(init) != INIT_SIZE:
        raise LocalProtocolError(f"the handshake block must be {INIT_SIZE} bytes")
    rk, hk_initiator, hk_responder = session_keys(secret)
    root, cks, nhks = root_step(rk, crypto.x25519(ratchet_secret, their_prekey))
    return Session(session_id=bytes(session_id), ad=bytes(ad), initiator=True, confirmed=False,
                   created=created, confirmed_at=0, init=bytes(init), root=root,
                   dhs_secret=bytes(ratchet_secret),
                   dhs_public=crypto.x25519_public(ratchet_secret), dhr=bytes(their_prekey),
                   cks=cks, ns=0, pn=0, reserved=0, ck_reserved=cks, hks=hk_initiator, nhks=nhks,
                   ckr=None, nr=0, hkr=None, nhkr=hk_responder, skipped=(), oldest=0)


def start_responder(*, secret: bytes, ad: bytes, session_id: bytes, prekey_secret: bytes,
                    prekey_public: bytes, created: int) -> Session:
    """The responder's session: its signed prekey is its first ratchet key; it can send
    once the initiator's first message has opened."""
    _check_start(secret, ad, session_id)
    rk, hk_initiator, hk_responder = session_keys(secret)
    return Session(session_id=bytes(session_id), ad=bytes(ad), initiator=False, confirmed=False,
                   created=created, confirmed_at=0, init=None, root=rk,
                   dhs_secret=bytes(prekey_secret),
                   dhs_public=bytes(prekey_public), dhr=None, cks=None, ns=0, pn=0, reserved=0,
                   ck_reserved=None, hks=None, nhks=hk_responder, ckr=None, nr=0, hkr=None,
                   nhkr=hk_initiator, skipped=(), oldest=0)


# --- sending ----------------------------------------------------------------------------------


def encrypt(state: Session, plaintext: bytes, ad: bytes, ratchet_secret: bytes) -> Encrypted:
    """Encrypt one message. ``ratchet_secret`` (32 fresh random bytes) is used only
    when a DH step is due; ``ad`` is what the envelope binds (docs/sessions.md §11)."""
    if len(plaintext) > MAX_BODY - crypto.AEAD_TAG_SIZE:
        raise LocalProtocolError(f"a session message holds at most {MAX_BODY - 16} bytes")
    s = state
    persist = False
    if s.cks is None:
        if s.dhr is None:
            raise LocalProtocolError("the responder sends only after the first message opened")
        root, first, nhks = root_step(s.root, crypto.x25519(ratchet_secret, s.dhr))
        s = replace(s, root=root, dhs_secret=bytes(ratchet_secret),
                    dhs_public=crypto.x25519_public(ratchet_secret), cks=first, hks=s.nhks,
                    nhks=nhks, ns=0, pn=state.ns, reserved=0, ck_reserved=first)
        persist = True
    cks, hks, dhs_public = s.cks, s.hks, s.dhs_public
    if cks is None or hks is None or dhs_public is None:
        raise LocalProtocolError("an inconsistent session state")
    if s.ns >= s.reserved:
        if s.ns + RESERVE > MAX_NUMBER:
            raise LocalProtocolError("this sending chain is used up; the other side must reply")
        s = replace(s, reserved=s.ns + RESERVE, ck_reserved=_advance(cks, RESERVE))
        persist = True
    mk, next_ck = chain_step(cks)
    plain_header = dhs_public + struct.pack(">II", s.pn, s.ns)
    header = seal_header(hks, plain_header, s.ad + ad)
    body = crypto.aead_encrypt(mk, _body_nonce(mk), plaintext, s.ad + header + ad)
    s = replace(s, cks=next_ck, ns=s.ns + 1)
    return Encrypted(state=s, header=header, body=body,
                     init=None if s.confirmed else s.init, persist=persist)


# --- receiving ------------------------------------------------------------------------------


def _split(plain: bytes) -> tuple[bytes, int, int]:
    pn, n = struct.unpack_from(">II", plain, 32)
    return plain[:32], pn, n


def _skip(ck: bytes, start: int, stop: int, now: int) -> tuple[dict[int, tuple[bytes, int]], bytes]:
    keys: dict[int, tuple[bytes, int]] = {}
    for n in range(start, stop):
        mk, ck = chain_step(ck)
        keys[n] = (mk, now)
    return keys, ck


def _find(skipped: tuple[SkippedChain, ...], hk: bytes) -> int:
    for i, chain in enumerate(skipped):
        if crypto.equal(chain.header_key, hk):
            return i
    return -1


def _add(skipped: tuple[SkippedChain, ...], hk: bytes, keys: dict[int, tuple[bytes, int]],
         now: int) -> tuple[SkippedChain, ...]:
    i = _find(skipped, hk)
    if i < 0:
        return (*skipped, SkippedChain(header_key=hk, keys=keys, ended=now))
    merged = {**skipped[i].keys, **keys}
    return (*skipped[:i], SkippedChain(header_key=hk, keys=merged, ended=now),
            *skipped[i + 1:])


def _oldest(skipped: tuple[SkippedChain, ...]) -> int:
    """When the next expiry is due: the oldest key, or the oldest end of an empty chain."""
    times = [t for c in skipped for _, t in c.keys.values()]
    times += [c.ended for c in skipped if not c.keys]
    return min(times, default=0)


def _bound(skipped: tuple[SkippedChain, ...]) -> tuple[tuple[SkippedChain, ...], int, int]:
    """Enforce the chain and key counts, dropping the oldest first: (chains, dropped, oldest)."""
    dropped = 0
    while len(skipped) > MAX_SKIPPED_CHAINS:
        dropped += len(skipped[0].keys)
        skipped = skipped[1:]
    if any(len(c.keys) > MAX_SKIP for c in skipped):  # per chain: the lowest numbers go
        trimmed = []
        for c in skipped:
            if len(c.keys) > MAX_SKIP:
                keep = sorted(c.keys)[-MAX_SKIP:]
                dropped += len(c.keys) - MAX_SKIP
                c = SkippedChain(header_key=c.header_key, ended=c.ended,
                                 keys={n: c.keys[n] for n in keep})
            trimmed.append(c)
        skipped = tuple(trimmed)
    total = sum(len(c.keys) for c in skipped)
    if total > MAX_STORED_KEYS:
        order = sorted((t, i, n) for i, c in enumerate(skipped) for n, (_, t) in c.keys.items())
        gone = {(i, n) for _, i, n in order[:total - MAX_STORED_KEYS]}
        dropped += len(gone)
        skipped = tuple(
            SkippedChain(header_key=c.header_key, ended=c.ended,
                         keys={n: v for n, v in c.keys.items() if (i, n) not in gone})
            for i, c in enumerate(skipped))
    return skipped, dropped, _oldest(skipped)


def expire(state: Session, now: int) -> tuple[Session, int]:
    """Delete skipped keys older than MAX_KEY_AGE: (state, how many were deleted)."""
    if not state.skipped or state.oldest + MAX_KEY_AGE > now:
        return state, 0
    dropped = 0
    kept = []
    for c in state.skipped:
        keys = {n: v for n, v in c.keys.items() if v[1] + MAX_KEY_AGE > now}
        dropped += len(c.keys) - len(keys)
        if keys or c.ended + MAX_KEY_AGE > now:
            kept.append(SkippedChain(header_key=c.header_key, keys=keys, ended=c.ended))
    skipped = tuple(kept)
    return replace(state, skipped=skipped, oldest=_oldest(skipped)), dropped


def keep_key(state: Session, hk: bytes, n: int, mk: bytes, now: int) -> tuple[Session, int]:
    """Put a used message key back among the skipped keys, as if its message had not
    arrived: a replay of that message opens again (once). The daemon does this for a
    message no client has acknowledged yet, so a restart before one does cannot lose
    it; ``drop_key`` once one has. Bounded like any skipped key: (state, dropped)."""
    skipped, dropped, oldest = _bound(_add(state.skipped, hk, {n: (mk, now)}, now))
    return replace(state, skipped=skipped, oldest=oldest), dropped


def drop_key(state: Session, hk: bytes, n: int) -> Session:
    """Delete message ``n``'s key of the chain ``hk`` if it is still held (a no-op
    otherwise): its message was handed over, or must never open again."""
    i = _find(state.skipped, hk)
    if i < 0 or n not in state.skipped[i].keys:
        return state
    chain = state.skipped[i]
    keys = {k: v for k, v in chain.keys.items() if k != n}
    skipped = (*state.skipped[:i], SkippedChain(header_key=hk, keys=keys, ended=chain.ended),
               *state.skipped[i + 1:])
    return replace(state, skipped=skipped, oldest=_oldest(skipped))


def _open_body(mk: bytes, body: bytes, ad: bytes) -> bytes:
    try:
        return crypto.aead_decrypt(mk, _body_nonce(mk), body, ad)
    except DecryptionError as exc:
        raise DecryptionError("the session message's body does not authenticate") from exc


def _from_skipped(s: Session, hk: bytes, n: int, header: bytes, body: bytes, ad: bytes,
                  dropped: int, now: int) -> Decrypted:
    i = _find(s.skipped, hk)
    entry = s.skipped[i].keys.get(n) if i >= 0 else None
    if entry is None:
        raise DuplicateMessageError(
            f"message {n} of this chain was opened before, or given up as lost")
    plaintext = _open_body(entry[0], body, s.ad + header + ad)
    chain = s.skipped[i]
    keys = {k: v for k, v in chain.keys.items() if k != n}
    skipped = (*s.skipped[:i], SkippedChain(header_key=hk, keys=keys, ended=chain.ended),
               *s.skipped[i + 1:])
    new = replace(s, skipped=skipped, oldest=_oldest(skipped), confirmed=True,
                  confirmed_at=s.confirmed_at or now, init=None)
    return Decrypted(state=new, plaintext=plaintext, number=n, new_chain=False, dropped=dropped,
                     header_key=hk, message_key=entry[0])


def decrypt(state: Session, header: bytes, body: bytes, ad: bytes, now: int) -> Decrypted:
    """Open one message; the caller's ``state`` is never changed (keep it on error).

    Header keys are tried in order: the current receiving chain's, the next one's
    (a DH step), then those of chains with skipped keys. Errors: UnknownSessionError
    (no header key opens it), DuplicateMessageError (its key is gone),
    TooFarAheadError, DecryptionError (the body), SessionError (an inconsistent header).
    """
    if len(header) != HEADER_SIZE:
        raise (TruncatedError if len(header) < HEADER_SIZE else OversizeError)(
            f"a session header is {HEADER_SIZE} bytes, not {len(header)}")
    if len(body) < crypto.AEAD_TAG_SIZE:
        raise TruncatedError("a session body is at least 16 bytes")
    if len(body) > MAX_BODY:
        raise OversizeError(f"a session body is at most {MAX_BODY} bytes")
    s, dropped = expire(state, now)
    header_ad = s.ad + ad
    body_ad = s.ad + header + ad
    if s.hkr is not None and s.ckr is not None:
        plain = open_header(s.hkr, header, header_ad)
        if plain is not None:
            dh, _pn, n = _split(plain)
            if s.dhr is None or not crypto.equal(dh, s.dhr):
                raise SessionError("a header of the current chain names another ratchet key")
            if n < s.nr:
                return _from_skipped(s, s.hkr, n, header, body, ad, dropped, now)
            if n - s.nr > MAX_SKIP:
                raise TooFarAheadError(f"message {n} is {n - s.nr} ahead; at most {MAX_SKIP}")
            keys, ck = _skip(s.ckr, s.nr, n, now)
            mk, ck = chain_step(ck)
            plaintext = _open_body(mk, body, body_ad)
            skipped, d, oldest = _bound(_add(s.skipped, s.hkr, keys, now) if keys
                                        else s.skipped)
            new = replace(s, ckr=ck, nr=n + 1, skipped=skipped, oldest=oldest, confirmed=True,
                          confirmed_at=s.confirmed_at or now, init=None)
            return Decrypted(state=new, plaintext=plaintext, number=n, new_chain=False,
                             dropped=dropped + d, header_key=s.hkr, message_key=mk)
    plain = open_header(s.nhkr, header, header_ad)
    if plain is not None:
        dh, pn, n = _split(plain)
        if s.dhr is not None and crypto.equal(dh, s.dhr):
            raise SessionError("a new chain with the old ratchet key")
        if s.dhs_secret is None:
            raise SessionError("a second DH step before ours: the contact's state is broken")
        if n > MAX_SKIP:
            raise TooFarAheadError(f"message {n} of a new chain; at most {MAX_SKIP} skipped")
        old: dict[int, tuple[bytes, int]] = {}
        if s.ckr is not None and s.hkr is not None:
            if pn - s.nr > MAX_SKIP:
                raise TooFarAheadError(f"{pn - s.nr} messages left in the old chain; "
                                       f"at most {MAX_SKIP}")
            old, _ = _skip(s.ckr, s.nr, pn, now)
        root, ckr, nhkr = root_step(s.root, crypto.x25519(s.dhs_secret, dh))
        keys, ck = _skip(ckr, 0, n, now)
        mk, ck = chain_step(ck)
        plaintext = _open_body(mk, body, body_ad)
        # the chain we step past is remembered, with its skipped keys if any
        skipped = _add(s.skipped, s.hkr, old, now) if s.hkr is not None else s.skipped
        if keys:
            skipped = _add(skipped, s.nhkr, keys, now)
        skipped, d, oldest = _bound(skipped)
        new = replace(s, root=root, dhr=dh, ckr=ck, nr=n + 1, hkr=s.nhkr, nhkr=nhkr,
                      dhs_secret=None, dhs_public=None, cks=None, ck_reserved=None,
                      skipped=skipped, oldest=oldest, confirmed=True,
                      confirmed_at=s.confirmed_at or now, init=None)
        return Decrypted(state=new, plaintext=plaintext, number=n, new_chain=True,
                         dropped=dropped + d, header_key=s.nhkr, message_key=mk)
    for chain in s.skipped:
        if s.hkr is not None and crypto.equal(chain.header_key, s.hkr):
            continue
        plain = open_header(chain.header_key, header, header_ad)
        if plain is not None:
            _dh, _pn, n = _split(plain)
            return _from_skipped(s, chain.header_key, n, header, body, ad, dropped, now)
    raise UnknownSessionError("the header opens with none of this session's keys")


# --- storage ----------------------------------------------------------------------------------


def _encode(s: Session) -> bytes:
    flags = ((_F_INITIATOR if s.initiator else 0) | (_F_CONFIRMED if s.confirmed else 0)
             | (_F_INIT if s.init is not None else 0) | (_F_DHS if s.dhs_secret is not None else 0)
             | (_F_DHR if s.dhr is not None else 0) | (_F_SEND if s.cks is not None else 0)
             | (_F_RECV if s.ckr is not None else 0))
    out = [bytes([STATE_VERSION, flags]), struct.pack(">QQ", s.created, s.confirmed_at),
           s.session_id, s.ad, s.root]
    if s.init is not None:
        out.append(s.init)
    if s.dhs_secret is not None:
        out.append(s.dhs_secret)
    if s.dhr is not None:
        out.append(s.dhr)
    # The sending side resumes at the end of its reserved block: no number below
    # ``reserved`` is ever used again after a reload.
    out += [s.nhks, struct.pack(">II", s.pn, max(s.ns, s.reserved))]
    if s.cks is not None:
        if s.ck_reserved is None or s.hks is None:
            raise LocalProtocolError("an inconsistent session state")
        out += [s.ck_reserved if s.reserved > s.ns else s.cks, s.hks]
    out.append(s.nhkr)
    if s.ckr is not None:
        if s.hkr is None:
            raise LocalProtocolError("an inconsistent session state")
        out += [s.ckr, s.hkr, struct.pack(">I", s.nr)]
    out.append(bytes([len(s.skipped)]))
    for c in s.skipped:
        out += [c.header_key, struct.pack(">QH", c.ended, len(c.keys))]
        for n in sorted(c.keys):
            mk, t = c.keys[n]
            out += [struct.pack(">IQ", n, t), mk]
    return b"".join(out)


def _decode(data: bytes) -> Session:
    if len(data) > MAX_STATE_SIZE:
        raise OversizeError(f"a stored session is at most {MAX_STATE_SIZE} bytes")
    r = Reader(data)
    version = r.u8()
    if version != STATE_VERSION:
        raise UnknownVersionError(f"stored session version {version} is not spoken here")
    flags = r.u8()
    if flags & ~0x7F:
        raise NonCanonicalError(f"unknown session flags {flags:#04x}")
    initiator, confirmed = bool(flags & _F_INITIATOR), bool(flags & _F_CONFIRMED)
    has = {f: bool(flags & f) for f in (_F_INIT, _F_DHS, _F_DHR, _F_SEND, _F_RECV)}
    if (has[_F_INIT] and (confirmed or not initiator)) or (has[_F_SEND] and not has[_F_DHS]) \
            or ((has[_F_SEND] or has[_F_RECV]) and not has[_F_DHR]):
        raise MalformedError("inconsistent session flags")
    created, confirmed_at = struct.unpack(">QQ", r.take(16))
    if confirmed_at and not confirmed:
        raise MalformedError("a confirmation time on an unconfirmed session")
    session_id, ad, root = r.take(32), r.take(AD_SIZE), r.take(32)
    init = r.take(INIT_SIZE) if has[_F_INIT] else None
    dhs_secret = r.take(32) if has[_F_DHS] else None
    dhr = r.take(32) if has[_F_DHR] else None
    nhks = r.take(32)
    pn, ns = struct.unpack(">II", r.take(8))
    cks = hks = None
    if has[_F_SEND]:
        cks, hks = r.take(32), r.take(32)
    nhkr = r.take(32)
    ckr = hkr = None
    nr = 0
    if has[_F_RECV]:
        ckr, hkr = r.take(32), r.take(32)
        nr = int.from_bytes(r.take(4), "big")
    count = r.u8()
    if count > MAX_SKIPPED_CHAINS:
        raise MalformedError(f"{count} skipped chains; at most {MAX_SKIPPED_CHAINS}")
    chains: list[SkippedChain] = []
    total = 0
    for _ in range(count):
        hk = r.take(32)
        ended, size = struct.unpack(">QH", r.take(10))
        total += size
        if total > MAX_STORED_KEYS:
            raise MalformedError(f"more than {MAX_STORED_KEYS} skipped keys")
        keys: dict[int, tuple[bytes, int]] = {}
        last = -1
        for _ in range(size):
            n, t = struct.unpack(">IQ", r.take(12))
            if n <= last:
                raise NonCanonicalError("skipped keys out of order")
            last = n
            keys[n] = (r.take(32), t)
        if _find(tuple(chains), hk) >= 0:
            raise NonCanonicalError("two skipped chains under one header key")
        chains.append(SkippedChain(header_key=hk, keys=keys, ended=ended))
    r.end()
    skipped = tuple(chains)
    return Session(session_id=session_id, ad=ad, initiator=initiator, confirmed=confirmed,
                   created=created, confirmed_at=confirmed_at, init=init, root=root,
                   dhs_secret=dhs_secret,
                   dhs_public=crypto.x25519_public(dhs_secret) if dhs_secret else None,
                   dhr=dhr, cks=cks, ns=ns, pn=pn, reserved=ns, ck_reserved=cks, hks=hks,
                   nhks=nhks, ckr=ckr, nr=nr, hkr=hkr, nhkr=nhkr, skipped=skipped,
                   oldest=_oldest(skipped))
