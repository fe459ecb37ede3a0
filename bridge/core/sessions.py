"""Every session with one contact, and the rules that keep both sides on one of them
(docs/sessions.md §10).

A contact has at most one *active* session (the one we send in) and a few *retired*
ones, kept only to open messages still travelling when they were replaced, until
those messages' envelopes must have expired.

- **Simultaneous initiation.** If both sides start a session before hearing from the
  other, each ends up holding both; the one whose initiator's Ed25519 key is lower
  (bytewise) stays active on both sides, the other is retired.
- **Session reset.** A new handshake from the contact, made after the contact's first
  reply in our active session (or while the active one is the contact's own), means
  the contact started over (lost its state, restored a backup, moved its identity):
  the new session becomes active and the event is ``Outcome.RESET``, for the person
  to see. A handshake made before that reply is the other half of a simultaneous
  start that arrived late, and follows the first rule.
- **Late handshakes.** One not newer than the active session's (``created``) is
  retired at once (``Outcome.STALE``): a relay replaying it cannot switch sessions. The
  ids of sessions dropped early (past ``MAX_RETIRED``) are kept until their messages
  expire, and their handshakes refused.
- **Starting over ourselves.** ``begin`` puts a session we initiated in front; the
  contact sees a reset.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, replace
from typing import Final

from bridge.core import crypto
from bridge.core.errors import (
    DuplicateMessageError,
    LocalProtocolError,
    MalformedError,
    NonCanonicalError,
    OversizeError,
    UnknownSessionError,
    UnknownVersionError,
)
from bridge.core.handshake import Handshake
from bridge.core.ratchet import (
    CLOCK_SKEW,
    MAX_KEY_AGE,
    MAX_STATE_SIZE,
    MAX_STORED_KEYS,
    Decrypted,
    Encrypted,
    Session,
    SkippedChain,
    decrypt,
    drop_key,
    encrypt,
    keep_key,
    start_initiator,
    start_responder,
)
from bridge.core.reader import Reader

MAX_RETIRED: Final = 4
MAX_CLOSED: Final = 64
# Message keys held for one contact in all their sessions together: one session's bound,
# so a contact's stored state stays under ~100 KB however many sessions they start.
MAX_PEER_KEYS: Final = MAX_STORED_KEYS
PEER_VERSION: Final = 1
MAX_PEER_SIZE: Final = (2 + 4 + (MAX_RETIRED + 1) * (8 + 4 + MAX_STATE_SIZE) + 1
                        + MAX_CLOSED * 40)


class Outcome(enum.Enum):
    NEW = "new"  # the first session with this contact
    SAME = "same"  # the handshake belongs to a session we already hold
    KEPT_OURS = "kept ours"  # simultaneous initiation: ours wins, theirs is retired
    TOOK_THEIRS = "took theirs"  # simultaneous initiation: theirs wins, ours is retired
    RESET = "reset"  # the contact started over: show it to the person
    STALE = "stale"  # an older handshake than the active session's, arriving late: retired


@dataclass(frozen=True, slots=True)
class Retired:
    session: Session
    until: int  # unix time after which nothing sent in it can still arrive


@dataclass(frozen=True, slots=True)
class Peer:
    active: Session | None = None
    retired: tuple[Retired, ...] = ()  # oldest first
    # (session id, until) of sessions dropped before their messages had all expired
    # (more than MAX_RETIRED at once): their handshakes are refused, not started again
    closed: tuple[tuple[bytes, int], ...] = ()

    def find(self, session_id: bytes) -> Session | None:
        for s in self.sessions():
            if crypto.equal(s.session_id, session_id):
                return s
        return None

    def is_closed(self, session_id: bytes) -> bool:
        return any(crypto.equal(sid, session_id) for sid, _ in self.closed)

    def sessions(self) -> tuple[Session, ...]:
        """Active first, then retired, newest first: the order messages are tried in."""
        head = (self.active,) if self.active is not None else ()
        return (*head, *(r.session for r in reversed(self.retired)))

    def to_bytes(self) -> bytes:
        out = [bytes([PEER_VERSION, 1 if self.active is not None else 0])]
        if self.active is not None:
            blob = self.active.to_bytes()
            out += [struct.pack(">I", len(blob)), blob]
        out.append(bytes([len(self.retired)]))
        for r in self.retired:
            blob = r.session.to_bytes()
            out += [struct.pack(">QI", r.until, len(blob)), blob]
        out.append(bytes([len(self.closed)]))
        for sid, until in self.closed:
            out += [sid, struct.pack(">Q", until)]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Peer:
        if len(data) > MAX_PEER_SIZE:
            raise OversizeError(f"a stored contact's sessions are at most {MAX_PEER_SIZE} bytes")
        r = Reader(data)
        if r.u8() != PEER_VERSION:
            raise UnknownVersionError("stored sessions of an unknown version")
        has_active = r.u8()
        if has_active > 1:
            raise NonCanonicalError("unknown stored-sessions flag")
        active = Session.from_bytes(r.take(int.from_bytes(r.take(4), "big"))) \
            if has_active else None
        count = r.u8()
        if count > MAX_RETIRED:
            raise MalformedError(f"{count} retired sessions; at most {MAX_RETIRED}")
        retired = []
        for _ in range(count):
            until, size = struct.unpack(">QI", r.take(12))
            retired.append(Retired(session=Session.from_bytes(r.take(size)), until=until))
        count = r.u8()
        if count > MAX_CLOSED:
            raise MalformedError(f"{count} closed sessions; at most {MAX_CLOSED}")
        closed = tuple((r.take(32), r.u64()) for _ in range(count))
        r.end()
        return cls(active=active, retired=tuple(retired), closed=closed)


def _retire(peer: Peer, session: Session | None, now: int) -> Peer:
    """``peer`` with ``session`` (if any) retired and everything expired dropped; the
    active session is the caller's to set."""
    kept = tuple(r for r in peer.retired if r.until > now)
    if session is not None:
        kept = (*kept, Retired(session=session, until=now + MAX_KEY_AGE))
    overflow = kept[:-MAX_RETIRED] if len(kept) > MAX_RETIRED else ()
    closed = tuple(c for c in peer.closed if c[1] > now)
    closed = (*closed, *((r.session.session_id, r.until) for r in overflow))[-MAX_CLOSED:]
    return Peer(active=peer.active, retired=kept[len(overflow):], closed=closed)


def _with_active(peer: Peer, active: Session | None) -> Peer:
    return Peer(active=active, retired=peer.retired, closed=peer.closed)


def _replace(peer: Peer, session: Session) -> Peer:
    if peer.active is not None and crypto.equal(peer.active.session_id, session.session_id):
        return _with_active(peer, session)
    retired = tuple(Retired(session=session, until=r.until)
                    if crypto.equal(r.session.session_id, session.session_id) else r
                    for r in peer.retired)
    return Peer(active=peer.active, retired=retired, closed=peer.closed)


def begin(peer: Peer, session: Session, now: int) -> Peer:
    """Make a session we just initiated the active one (first contact, or starting over)."""
    if not session.initiator:
        raise LocalProtocolError("begin() takes a session we initiated")
    return _with_active(_retire(peer, peer.active, now), session)


def adopt(peer: Peer, incoming: Session, now: int,
          restart: bool = False) -> tuple[Peer, Outcome]:
    """Take in a session the contact initiated, after its first message opened in it.
    ``restart``: its handshake says the contact starts over on purpose (FLAG_RESTART):
    newer than our active session, it is a reset whatever the timing.

    The caller checks ``is_closed`` first (a handshake of a session dropped early is
    a replay: DuplicateMessageError here too)."""
    if incoming.initiator:
        raise LocalProtocolError("adopt() takes a session the contact initiated")
    for known in peer.sessions():
        if {known.ad[:32], known.ad[32:]} != {incoming.ad[:32], incoming.ad[32:]}:
            raise LocalProtocolError("adopt() was given a session with another contact")
    if peer.is_closed(incoming.session_id):
        raise DuplicateMessageError("the handshake of a session closed before: a replay")
    if peer.find(incoming.session_id) is not None:
        return _replace(peer, incoming), Outcome.SAME
    active = peer.active
    if active is None:
        return _with_active(_retire(peer, None, now), incoming), Outcome.NEW
    if restart and incoming.created > active.created \
            and not (active.initiator and not active.confirmed):
        # Not the other half of a simultaneous start (that never carries the flag):
        # the contact lost our session, or its person asked for a new one. (If ours is
        # a start of our own that nothing answered yet, both started over at once: the
        # simultaneous rule below decides, the same way on both sides.)
        return _with_active(_retire(peer, active, now), incoming), Outcome.RESET
    if active.initiator and (not active.confirmed
                             or incoming.created < active.confirmed_at + CLOCK_SKEW):
        # Both started before hearing from the other (the contact's handshake is older
        # than its first reply in ours, give or take the clock skew): the session whose
        # initiator has the lower key wins, on both sides.
        if active.ad[:32] < incoming.ad[:32]:
            return _with_active(_retire(peer, incoming, now), active), Outcome.KEPT_OURS
        return _with_active(_retire(peer, active, now), incoming), Outcome.TOOK_THEIRS
    if incoming.created <= active.created:
        # made before the session we have: an old handshake arriving late (its message
        # is new to us, or the session would have been found); it never takes over
        return _with_active(_retire(peer, incoming, now), active), Outcome.STALE
    return _with_active(_retire(peer, active, now), incoming), Outcome.RESET


def cap_keys(peer: Peer) -> tuple[Peer, int]:
    """Enforce MAX_PEER_KEYS over all the contact's sessions, the oldest keys first:
    (peer, how many keys were given up)."""
    held = [(t, -i, c, n) for i, s in enumerate(peer.sessions())
            for c, chain in enumerate(s.skipped) for n, (_, t) in chain.keys.items()]
    if len(held) <= MAX_PEER_KEYS:
        return peer, 0
    held.sort()  # the oldest first; at one age, the oldest retired session's first
    gone: dict[int, set[tuple[int, int]]] = {}
    for _, minus_i, c, n in held[:len(held) - MAX_PEER_KEYS]:
        i = -minus_i
        gone.setdefault(i, set()).add((c, n))
    for i, s in enumerate(peer.sessions()):
        if i in gone:
            chains = tuple(SkippedChain(header_key=chain.header_key, ended=chain.ended,
                                        keys={n: v for n, v in chain.keys.items()
                                              if (c, n) not in gone[i]})
                           for c, chain in enumerate(s.skipped))
            oldest = min([t for ch in chains for _, t in ch.keys.values()]
                         + [ch.ended for ch in chains if not ch.keys], default=0)
            peer = _replace(peer, replace(s, skipped=chains, oldest=oldest))
    return peer, len(held) - MAX_PEER_KEYS


def send(peer: Peer, plaintext: bytes, ad: bytes, ratchet_secret: bytes) -> tuple[Peer, Encrypted]:
    if peer.active is None:
        raise LocalProtocolError("no session with this contact: start one")
    out = encrypt(peer.active, plaintext, ad, ratchet_secret)
    return _with_active(peer, out.state), out


def receive(peer: Peer, header: bytes, body: bytes, ad: bytes,
            now: int) -> tuple[Peer, Decrypted]:
    """Open a message in whichever of the contact's sessions its header opens in.
    UnknownSessionError if none: the contact is in a session we do not have."""
    for session in peer.sessions():
        try:
            out = decrypt(session, header, body, ad, now)
        except UnknownSessionError:
            continue
        after, dropped = cap_keys(_replace(peer, out.state))
        return after, replace(out, dropped=out.dropped + dropped)
    raise UnknownSessionError("no session with this contact opens the message")


def keep(peer: Peer, session_id: bytes, dec: Decrypted, now: int) -> tuple[Peer, int]:
    """Hold the key ``dec`` used in the session again until ``release`` (a message not
    yet handed to a client: a replay after a restart opens it once more); (peer, keys
    given up to the bounds). The session may be gone: then nothing is held."""
    session = peer.find(session_id)
    if session is None:
        return peer, 0
    kept, dropped = keep_key(session, dec.header_key, dec.number, dec.message_key, now)
    peer, more = cap_keys(_replace(peer, kept))
    return peer, dropped + more


def release(peer: Peer, session_id: bytes, header_key: bytes, number: int) -> Peer:
    """Forget a key ``keep`` held (its message reached a client)."""
    session = peer.find(session_id)
    if session is None:
        return peer
    return _replace(peer, drop_key(session, header_key, number))


def tidy(peer: Peer, now: int) -> Peer:
    """Drop retired sessions and closed ids whose messages can no longer arrive."""
    return _retire(peer, None, now)


def initiator_session(hs: Handshake, ratchet_secret: bytes) -> Session:
    """The session a handshake we initiated starts (give it to ``begin``)."""
    return start_initiator(secret=hs.secret, ad=hs.ad, session_id=hs.session_id, init=hs.init,
                           their_prekey=hs.prekey_x25519, ratchet_secret=ratchet_secret,
                           created=hs.created)


def responder_session(hs: Handshake, prekey_secret: bytes) -> Session:
    """The session a contact's handshake starts: decrypt its message, then ``adopt``."""
    return start_responder(secret=hs.secret, ad=hs.ad, session_id=hs.session_id,
                           prekey_secret=prekey_secret,
                           prekey_public=crypto.x25519_public(prekey_secret),
                           created=hs.created)
