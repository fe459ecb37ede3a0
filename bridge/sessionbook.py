"""The session book: our end-to-end sessions with each contact (docs/sessions.md),
kept in the key file, and version-2 sealing and opening through them.

- **State at rest.** A contact's sessions (``core.sessions.Peer``) live in its
  record of the key file (``ContactRecord.sessions``), so they are encrypted with
  the keys and written atomically. When the ratchet says a change matters for key
  reuse (``persist``: a new block of message numbers, a DH step, a new session) the
  file is written *before* the envelope leaves; after opening, before the message
  is shown (``opened`` then ``durable``). A ``kill -9`` therefore never reuses a
  message key, and never shows a message twice.
- **Strangers cost nothing durable.** A session a stranger starts is held in RAM
  with their contact request and written only if the person accepts
  (``promote``), dropped with the request otherwise (``forget``).
- **One at a time per contact.** Sending takes a per-contact lock: the ratchet is
  sequential, and two messages sealed at once from one state would share a key.
- **First contact.** A session can start only from the contact's signed hybrid
  prekey (``learn_hybrid_prekey``, from their announcement or introduction); without
  one, sealing raises ``WaitingForKeysError`` and the caller waits (sessions.md §3.3).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from bridge.contacts import ContactBook
from bridge.core import kem, tags
from bridge.core.address import decode_address, encode_address
from bridge.core.body import (
    SessionOpened,
    handshake_of,
    open_handshake,
    open_session,
    seal_session,
    session_bucket,
)
from bridge.core.envelope import Envelope, Kind
from bridge.core.errors import RemoteProtocolError, SessionError, UserError
from bridge.core.handshake import HybridPrekey, initiate
from bridge.core.identity import newest_valid
from bridge.core.ratchet import Decrypted
from bridge.core.sessions import (
    Outcome,
    Peer,
    begin,
    initiator_session,
    keep,
    release,
    tidy,
)
from bridge.core.stamp import Stamp
from bridge.identities import IdentityBook
from bridge.sessionview import decode_peer
from bridge.store.keystore import ContactRecord, IdentityRecord

log = logging.getLogger(__name__)

MAX_PENDING = 256  # strangers' sessions held in RAM (as many as contact requests)
MAX_HELD = 100_000  # messages whose keys are kept until a client has them (as the inbox's)
LATER = 0.5  # seconds within which a change no crash could misuse reaches the key file


class WaitingForKeysError(UserError):
    """No session with the contact yet, and none of their hybrid prekeys known."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """A message opened in a session: what it says, who sent it, and what it did."""

    sender: str  # address
    kind: Kind
    payload: bytes
    outcome: Outcome | None  # for a handshake: NEW, SAME, RESET, ...
    dropped: int  # message keys given up (the contact's messages that can no longer open)
    contact: bool  # False: a stranger; the session is held in RAM until accepted
    decrypted: Decrypted  # the key it used, for ``hold``


@dataclass(frozen=True, slots=True)
class _Held:
    owner: str
    sender: str
    session_id: bytes
    header_key: bytes
    number: int
    expiry: int


class SessionBook:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, clock: Callable[[], int],
                 random: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.ids, self.contacts, self.clock, self.random = ids, contacts, clock, random
        self._pending: dict[tuple[str, str], Peer] = {}  # strangers' sessions, RAM only
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._held: dict[bytes, _Held] = {}  # envelope id -> its key, kept in the session
        # Contacts' sessions as they are now. The key file holds their stored form, which
        # resumes sending at the end of the reserved block (docs/sessions.md §7.3): read
        # back after every message, it would skip a block per message.
        self._live: dict[tuple[str, str], Peer] = {}

    # --- state ----------------------------------------------------------------------------

    def peer(self, owner: str, address: str) -> Peer:
        """Our sessions with ``address`` (an empty Peer if none)."""
        key = (owner, address)
        live = self._live.get(key)
        if live is not None:
            return live
        c = ContactBook.find(self.ids.rec(owner), address)
        if c is None:
            return self._pending.get(key, Peer())
        live = self._live[key] = decode_peer(c)
        return live

    def _keep(self, owner: str, address: str, peer: Peer, *, urgent: bool = True) -> bool:
        """Record ``peer``; True if it went into the key file (a contact), False if
        it is held in RAM (a stranger). ``urgent``: written at once (a new session,
        a new block of message numbers, a key used up); else within ``LATER``
        seconds, with whatever else is written (a reload resumes safely without it)."""
        c = ContactBook.find(self.ids.rec(owner), address)
        if c is None:
            self._live.pop((owner, address), None)
            if (owner, address) not in self._pending and len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[(owner, address)] = peer
            return False
        self._live[(owner, address)] = peer
        c.sessions = base64.b64encode(peer.to_bytes()).decode()
        if urgent:
            self.ids.save_soon()
        else:
            self.ids.save_within(LATER)
        return True

    async def durable(self) -> None:
        """Wait until every change recorded so far is on disk."""
        await self.ids.flush()

    def promote(self, owner: str, address: str) -> None:
        """A stranger became a contact: their session goes into the key file."""
        peer = self._pending.pop((owner, address), None)
        if peer is not None:
            self._keep(owner, address, peer)

    def forget(self, owner: str, address: str) -> None:
        """A stranger's request was dropped, or a contact blocked or removed."""
        self._pending.pop((owner, address), None)
        self._live.pop((owner, address), None)
        lock = self._locks.get((owner, address))
        if lock is not None and not lock.locked():
            del self._locks[(owner, address)]

    def forget_identity(self, owner: str) -> None:
        """An identity was deleted: nothing of its sessions stays in RAM."""
        self._live = {k: v for k, v in self._live.items() if k[0] != owner}
        self._pending = {k: v for k, v in self._pending.items() if k[0] != owner}
        self._held = {k: h for k, h in self._held.items() if h.owner != owner}
        self._locks = {k: v for k, v in self._locks.items() if k[0] != owner}

    def tidy(self, now: int) -> None:
        """Drop the sessions and keys nothing can still arrive for (hourly upkeep);
        one key-file save if anything went."""
        changed = False
        for rec in self.ids.records():
            owner = self.ids.ident(rec).address
            for c in rec.contacts:
                if c.sessions:
                    peer = tidy(self.peer(owner, c.address), now)
                    self._live[(owner, c.address)] = peer
                    kept = base64.b64encode(peer.to_bytes()).decode()
                    changed = changed or kept != c.sessions
                    c.sessions = kept
        self._pending = {k: tidy(p, now) for k, p in self._pending.items()}
        self._held = {k: h for k, h in self._held.items() if h.expiry > now}
        if changed:
            self.ids.save_soon()

    # --- their prekeys -------------------------------------------------------------------

    def learn_hybrid_prekey(self, c: ContactRecord, their: bytes,
                            prekeys: Iterable[HybridPrekey]) -> bool:
        """Keep the newest valid hybrid prekey of a contact; True if it changed."""
        before = _their_prekey(c)
        best = newest_valid(before, prekeys, their, self.clock())
        if best is not None and best is not before:
            c.hybrid_prekey = best.encode().hex()
            self.ids.save_soon()
            return True
        return False

    # --- sending -------------------------------------------------------------------------

    def _lock(self, owner: str, to: str) -> asyncio.Lock:
        return self._locks.setdefault((owner, to), asyncio.Lock())

    def unanswered(self, owner: str, to: str) -> bool:
        """Our active session with ``to`` is theirs and we have sent nothing in it."""
        active = self.peer(owner, to).active
        return active is not None and not active.initiator and active.cks is None \
            and active.ns == 0 and active.pn == 0

    def check_can_start(self, owner: str, to: str) -> None:
        """WaitingForKeysError unless a new session with ``to`` can start now."""
        self._start(self.ids.rec(owner), self.contacts.need(owner, to))

    async def seal(self, owner: str, to: str, kind: Kind, payload: bytes,
                   stamp_for: Callable[[int], Awaitable[Stamp]], *,
                   restart: bool = False) -> bytes:
        """A version-2 envelope for contact ``to`` in our session with them (started
        from their hybrid prekey if there is none), spending a stamp of the size it
        needs; on disk before it is returned whenever the ratchet asks for it.

        The tag: the pair tag once they know us (they wrote, or the session is
        confirmed), else their address tag — a handshake may come from anyone there,
        a message in a session only under the pair tag. ``restart``: start a new
        session even if there is one (the contact sees a reset)."""
        rec = self.ids.rec(owner)
        c = self.contacts.need(owner, to)
        async with self._lock(owner, to):
            peer = self.peer(owner, to)
            started = peer.active is None or restart
            if started:
                peer = self._start(rec, c, restart=restart)
            active = peer.active
            assert active is not None
            stamp = await stamp_for(session_bucket(len(payload), active.init is not None))
            me, their = self.ids.ident(rec), decode_address(to)
            epoch = tags.epoch_of(self.clock())
            tag = (tags.pair_tag_to(tags.pair_secret(me.x25519_secret, me.public, their), their,
                                    epoch)
                   if c.heard_from or active.confirmed else tags.address_tag_v2(their, epoch))
            raw, after, persist = seal_session(
                sender=self.ids.ident(rec), recipient=decode_address(to), kind=kind, tag=tag,
                stamp=stamp, peer=peer, payload=payload, ratchet_secret=self.random(32))
            self._keep(owner, to, after, urgent=persist or started)
            if persist or started:
                await self.durable()
            return raw

    def _start(self, rec: IdentityRecord, c: ContactRecord, restart: bool = False) -> Peer:
        their = decode_address(c.address)
        prekey = _their_prekey(c)
        if prekey is None or prekey.expires <= self.clock():
            raise WaitingForKeysError(
                f"waiting for {c.petname or c.address[:8]}'s keys: they reach us with their "
                "announcement, once they are online")
        peer = self.peer(self.ids.ident(rec).address, c.address)
        # The contact takes a handshake for a reset only if it is newer than every
        # session it holds with us (sessions.adopt): within one second of the last
        # one, it is dated a second later (well inside the clock skew allowed).
        created = max([self.clock(), *(s.created + 1 for s in peer.sessions())])
        hs = initiate(identity=self.ids.ident(rec), responder=their, prekey=prekey,
                      one_time=None, now=created, ephemeral_secret=self.random(32),
                      encapsulated=kem.encapsulate(prekey.kem),
                      # flagged even when we hold no session: a daemon that lost its own
                      # (an older key file) starts over on purpose, and unflagged the
                      # contact would take it for the other half of a simultaneous start
                      # and keep its own, which this daemon can no longer read
                      restart=restart)
        return begin(peer, initiator_session(hs, self.random(32)), self.clock())

    # --- receiving -----------------------------------------------------------------------

    def open(self, owner: str, env: Envelope, contact: str | None) -> Arrival:
        """Open a session message for ``owner``. ``contact`` is the address the tag
        names (a pair tag), or None (our address tag: anyone may have written). The
        contact's sessions are recorded; ``await durable()`` before showing it.
        RemoteProtocolError (SessionError, DecryptionError, ...) if it does not open."""
        rec = self.ids.rec(owner)
        me = self.ids.ident(rec)
        now = self.clock()
        opened: SessionOpened
        if handshake_of(env) is None:
            if contact is None:
                raise SessionError("a session message under our address tag: not ours")
            opened = open_session(env, me, self.peer(owner, contact), now)
        else:
            def prekey(prekey_id: bytes) -> tuple[HybridPrekey, bytes, bytes] | None:
                return self.ids.hybrid_prekey(rec, prekey_id)

            def peer_for(initiator: bytes) -> Peer:
                return self.peer(owner, encode_address(initiator))

            known = self.peer(owner, contact) if contact is not None else None
            opened = open_handshake(env, me, prekey, now, peer_for=peer_for, known=known)
        sender = encode_address(opened.opened.sender)
        if contact is not None and sender != contact:
            raise SessionError("a message under a pair tag from someone else")
        is_contact = self._keep(owner, sender, opened.peer)
        if opened.outcome is Outcome.RESET:
            log.info("a contact started a new session")
        return Arrival(sender, opened.opened.kind, opened.opened.payload, opened.outcome,
                       opened.decrypted.dropped, is_contact, opened.decrypted)

    def hold(self, owner: str, arrival: Arrival, env: Envelope) -> None:
        """Keep the key ``arrival`` used in its session until ``release(env.id)``: a
        chat message no client has yet. Written with the rest of the open (call it
        before ``durable``), so a restart before a client takes the message opens it
        again when the network offers it again, once (docs/sessions.md §11)."""
        dec = arrival.decrypted
        peer, dropped = keep(self.peer(owner, arrival.sender), dec.state.session_id, dec,
                             self.clock())
        self._keep(owner, arrival.sender, peer)
        if dropped:
            log.info("%d message keys held for a contact were given up (bounds)", dropped)
        if env.id not in self._held and len(self._held) >= MAX_HELD:
            self._held.pop(next(iter(self._held)))
        self._held[env.id] = _Held(owner, arrival.sender, dec.state.session_id,
                                   dec.header_key, dec.number, env.expiry)

    def release(self, envelope_id: bytes) -> None:
        """A client has the message: delete the key ``hold`` kept for it."""
        h = self._held.pop(envelope_id, None)
        if h is not None:
            self._keep(h.owner, h.sender, release(self.peer(h.owner, h.sender), h.session_id,
                                                  h.header_key, h.number), urgent=False)

    def held(self) -> int:
        return len(self._held)


def _their_prekey(c: ContactRecord) -> HybridPrekey | None:
    if not c.hybrid_prekey:
        return None
    try:
        return HybridPrekey.parse(bytes.fromhex(c.hybrid_prekey))
    except (ValueError, RemoteProtocolError):
        return None
