"""The inbox: what arrives — watch the node for our tags, open, dispatch, hold
contact requests, and hand arrivals to the faces exactly once.

An envelope is looked up by its tag in the watch table (a dict: O(1) per
envelope whatever the store holds); only a watched tag costs a decryption. A
chat message counts as shown only when a face confirms it reached a client
(``delivered``): the gateway may hold it for a client that is offline, and a
restart before the client logs in must not lose it. Other arrivals count as
shown at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from bridge.aftersave import AfterSave
from bridge.batchparts import BatchParts
from bridge.contacts import ACCEPTED, BLOCKED, PENDING_IN, ContactBook, Waiting
from bridge.core import crypto, pow, tags
from bridge.core.acts import ActKind
from bridge.core.address import decode_address, encode_address
from bridge.core.batch import Batch, parse_session_record, record_id
from bridge.core.body import open_sealed
from bridge.core.envelope import VERSION_STAMPED, Envelope, Kind
from bridge.core.errors import (
    DuplicateMessageError,
    RemoteProtocolError,
    SessionError,
    TooFarAheadError,
    UserError,
)
from bridge.core.identity import SignedPrekey
from bridge.core.records import (
    Announcement,
    DirectMessage,
    HybridAnnouncement,
    Receipt,
    RoomMessage,
    parse_record,
)
from bridge.core.requests import work_per_byte
from bridge.core.seal import Opened, open_envelope
from bridge.core.sessions import Outcome
from bridge.core.watch import Purpose, Watch
from bridge.events import (
    ChatStateArrived,
    Event,
    EventBus,
    MessageArrived,
    ReceiptArrived,
    RecentErrors,
    RoomMessageArrived,
)
from bridge.filerecv import FileAssembler
from bridge.groups import GroupBook
from bridge.identities import IdentityBook
from bridge.outbox import ROOMS
from bridge.presencebook import PresenceBook
from bridge.sessionbook import Arrival, SessionBook
from bridge.sessionnotes import SessionNotes
from bridge.store.keystore import ContactRecord, IdentityRecord
from bridge.store.seen import ExpiringIds, SeenIds
from bridge.watching import Watching

log = logging.getLogger(__name__)

# Outcomes after which the contact's session is the one we send in, unconfirmed by us.
_THEIRS = frozenset({Outcome.NEW, Outcome.RESET, Outcome.TOOK_THEIRS})
# A chat state older than this when it arrives (a catch-up) is not shown.
CHAT_STATE_STALE = 120
# Contact requests' messages held in RAM until accepted: per (identity, stranger),
# and strangers in all; past these they stay in the network and are not shown.
MAX_HELD_PER_SENDER = 50
MAX_HELD_SENDERS = 256


class Inbox:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, bus: EventBus, *,
                 clock: Callable[[], int], errors: RecentErrors,
                 seen: SeenIds, chat_states: bool = False, markers: bool = False,
                 presence: bool = False,
                 sessions: SessionBook | None = None,
                 spawn: Callable[[Coroutine[Any, Any, None]], object] | None = None) -> None:
        self.ids = ids
        self.contacts = contacts
        self.bus = bus
        self.clock = clock
        self.errors = errors
        self.seen = seen  # shown to the user: kept in the key file, across restarts
        self.chat_states = chat_states
        self.markers = markers  # XEP-0333 read markers shown (opt-in)
        self.presence = presence  # contacts' presences shown (opt-in)
        self.files: FileAssembler | None = None  # files from contacts (set by the service)
        # contacts' pictures: (me, sender, accepted, record, envelope id), set by the service
        self.on_avatar: Callable[[str, str, bool, DirectMessage, bytes], None] | None = None
        self.groups: GroupBook | None = None  # private groups (set by the service)
        # a contact's announcement sealed to us (bridge.announcing), set by the service
        self.on_announcement: Callable[[Envelope, Watch], None] | None = None
        self.presences = PresenceBook(bus, clock, spawn)
        self.sessions = sessions if sessions is not None else SessionBook(ids, contacts, clock)
        self.spawn = spawn
        # Session arrivals are shown once the key file holds the sessions they moved
        self._after_durable = AfterSave(self.sessions.durable, errors, spawn)
        self.notes = SessionNotes(ids, contacts, bus, clock, self._after_durable)
        self.watching = Watching(ids, contacts, clock, ROOMS)
        self._opened = ExpiringIds()  # opened in this run (held ones included)
        self._unconfirmed = ExpiringIds()  # handed to the faces, not yet confirmed
        self._held: dict[tuple[str, str], list[MessageArrived]] = {}
        self._heard_ms: dict[tuple[str, str], int] = {}  # newest sent_at_ms shown per sender
        self.parts = BatchParts(self.sessions.release, self.seen.add)

    # --- what to watch ------------------------------------------------------------------

    def rewatch(self) -> None:
        self.watching.rebuild()

    def watched(self) -> dict[bytes, frozenset[Watch]]:
        return self.watching.watched()

    def watch_contact(self, owner: str, address: str) -> list[bytes]:
        """One contact changed (``Watching.contact``): its tags, and what the inbox
        remembers of it."""
        c = self.contacts.find(self.ids.rec(owner), address)
        if c is None:
            self._heard_ms.pop((owner, address), None)
        if c is None or c.state != ACCEPTED:
            self.presences.forget(owner, address)  # removed, blocked: nothing shown
        return self.watching.contact(owner, address)

    def purge(self, now: int) -> None:
        self.contacts.purge_requests(now)
        self.seen.purge(now)
        self._opened.purge(now)
        self._unconfirmed.purge(now)
        live = {k: [m for m in v if m.expiry > now] for k, v in self._held.items()}
        self._held = {k: v for k, v in live.items() if v}
        self.parts.purge(now)

    # --- arrivals -----------------------------------------------------------------------

    def on_envelope(self, env: Envelope) -> None:
        watches = self.watching.table.get(env.tag)
        if not watches or env.id in self._opened or env.id in self.seen:
            return
        self._opened.put(env.id, env.expiry)
        failures: list[Exception] = []
        for w in watches:
            try:
                self._open_for(env, w)
            except (RemoteProtocolError, UserError) as exc:
                failures.append(exc)
        # Several local identities may watch one tag, and a pair tag is shared by
        # both ends, so our own envelopes come back under it: only an envelope that
        # none of the watchers could take, under a tag not shared, is worth reporting.
        if failures and len(failures) == len(watches) and not any(w.pair for w in watches):
            self.errors.add(f"envelope {env.id.hex()[:12]} refused: {failures[0]}")

    def _show(self, event: Event, env_id: bytes, expiry: int) -> None:
        if isinstance(event, MessageArrived):  # a chat state older than it is no news
            self._heard((event.to, event.sender), event.sent_at_ms)
            self._unconfirmed.put(env_id, expiry)
        elif not isinstance(event, ChatStateArrived):  # typing is not worth a disk write
            self.seen.add(env_id, expiry)
        self.bus.emit(event)

    def _heard(self, key: tuple[str, str], sent_at_ms: int) -> None:
        self._heard_ms[key] = max(self._heard_ms.get(key, -1), sent_at_ms)

    def delivered(self, envelope_id: bytes) -> None:
        """A face handed this message to a client: never show it again."""
        expiry = self._unconfirmed.pop(envelope_id, None)
        if expiry is not None:
            self.seen.add(envelope_id, expiry)
        self.parts.done(envelope_id)

    def _open_for(self, env: Envelope, w: Watch) -> None:
        if env.version == VERSION_STAMPED:
            self._open_stamped(env, w)
            return
        if w.purpose is Purpose.ROOM:
            self._room(env, w.subject)
            return
        rec = self.ids.rec(w.owner)
        if w.purpose is Purpose.ANNOUNCE:
            self._announcement(env, rec, w.subject)
            return
        opened = open_envelope(env, self.ids.ident(rec).public, self.ids.opening_keys(rec))
        if w.inbound and encode_address(opened.sender) != w.subject:
            # only the contact can make the pair tag to us; anyone else sealed it to a
            # tag they should not know, so it is refused as a stranger's would not be
            raise UserError("an envelope under a contact's pair tag came from someone else")
        self._dispatch(rec, env, opened)

    def _open_stamped(self, env: Envelope, w: Watch) -> None:
        """A version-2 envelope: rooms and announcements in sealed bodies, direct
        messages and receipts in the contact's session (``SessionBook``)."""
        if w.purpose is Purpose.ROOM:
            secret = tags.room_secret(w.subject)
            pub = crypto.x25519_public(secret)
            opened = open_sealed(env, pub, [secret])
            self._room_record(env, w.subject, opened.sender, opened.payload)
            return
        rec = self.ids.rec(w.owner)
        if w.purpose is Purpose.ANNOUNCE:
            their = decode_address(w.subject)
            sealed = open_sealed(env, their, [tags.announce_secret(their)])
            if sealed.sender != their or env.kind != Kind.ANNOUNCEMENT:
                raise UserError("an announcement signed by someone else was ignored")
            ann = parse_record(Kind.ANNOUNCEMENT, sealed.payload, version=2)
            assert isinstance(ann, HybridAnnouncement)
            c = self.contacts.find(rec, w.subject)
            if c is not None:
                self.sessions.learn_hybrid_prekey(c, their, ann.prekeys)
                self.contacts.announced_endpoint(c, ann.issued_at, ann.endpoint)
            return
        if env.kind == Kind.ANNOUNCEMENT and self.on_announcement is not None:
            self.on_announcement(env, w)  # a contact's, sealed to us in our shard
            return
        if env.kind not in (Kind.DIRECT, Kind.RECEIPT):
            raise UserError(f"unexpected {env.kind.name.lower()} envelope for {rec.nick}")
        if w.pair and not w.inbound:  # sessions write only under the pair tag to us
            raise SessionError("a version-2 envelope under a version-1 pair tag")
        try:
            arrival = self.sessions.open(w.owner, env, w.subject if w.pair else None)
        except SessionError as exc:
            # opens in none of our sessions, names a prekey we lack, or steps where ours
            # cannot follow: the contact writes in a session we no longer have (a replay
            # is a duplicate, a jump too far is theirs alone; neither means that)
            if w.pair and not isinstance(exc, DuplicateMessageError | TooFarAheadError):
                self.notes.lost(w.owner, w.subject, env.expiry)
            raise
        record = parse_session_record(arrival.kind, arrival.payload)
        sender = decode_address(arrival.sender)
        c = self.contacts.find(rec, arrival.sender)
        if c is not None and c.state == BLOCKED:
            return  # decided now: an unblock before the key-file write must not show it
        if c is not None:  # strangers are not remembered: each would be one more entry
            self.notes.opened(w.owner, arrival.sender, env.expiry)
        if c is not None and c.state == ACCEPTED and arrival.outcome in _THEIRS:
            self.notes.confirm(w.owner, arrival.sender)
        if c is not None and arrival.outcome is Outcome.RESET:
            self.notes.reset(w.owner, c)
        if c is not None and arrival.dropped:
            self.notes.dropped(w.owner, c, arrival.dropped)
        if isinstance(record, Batch):
            self._batch(rec, w.owner, arrival, env, sender, record)
            return
        if (isinstance(record, DirectMessage) and record.chat_state is None
                and record.presence is None):
            # a chat message waits for a client: its key is kept until one has it, and
            # a chat state sent before it and arriving later is no news
            self.sessions.hold(w.owner, arrival, env)
            self._heard((w.owner, arrival.sender), record.sent_at_ms)
        self._after_durable(lambda: self._dispatch_record(rec, env, sender, record, None))

    def _batch(self, rec: IdentityRecord, owner: str, arrival: Arrival, env: Envelope,
               sender: bytes, batch: Batch) -> None:
        """Several messages in one envelope: each is shown once, under its own record
        id; the envelope's key is kept until a client has every one of them."""
        self.sessions.hold(owner, arrival, env)
        count = len(batch.records)
        rids = [record_id(env.id, n, count) for n in range(count)]
        self.parts.expect(env.id, env.expiry, rids)
        for msg in batch.records:
            self._heard((owner, arrival.sender), msg.sent_at_ms)

        def show() -> None:
            for rid, msg in zip(rids, batch.records, strict=True):
                if rid in self.seen:  # shown before a restart: its part is done
                    self.parts.done(rid)
                else:
                    self._dispatch_record(rec, env, sender, msg, None, rid)
        self._after_durable(show)

    def _room(self, env: Envelope, room: str) -> None:
        secret = tags.room_secret(room)
        opened = open_envelope(env, crypto.x25519_public(secret), [secret])
        self._room_record(env, room, opened.sender, opened.payload)

    def _room_record(self, env: Envelope, room: str, sender: bytes, payload: bytes) -> None:
        if env.kind != Kind.ROOM:
            raise UserError(f"a {env.kind.name.lower()} envelope under a room's tag was ignored")
        msg = parse_record(Kind.ROOM, payload, version=env.version)
        assert isinstance(msg, RoomMessage)
        if msg.room != room:  # the key that opened it names the room (envelope.md §9)
            raise UserError(f"a message that names room '{msg.room[:64]}' under the key of "
                            f"'{room}' was ignored")
        for rec in self.ids.records():
            self._show(RoomMessageArrived(
                to=self.ids.ident(rec).address, room=room, sender=encode_address(sender),
                sender_nick=msg.nick, text=msg.text, sent_at_ms=msg.sent_at_ms,
                envelope_id=env.id), env.id, env.expiry)

    def _announcement(self, env: Envelope, rec: IdentityRecord, address: str) -> None:
        their = decode_address(address)
        opened = open_envelope(env, their, [tags.announce_secret(their)])
        if opened.sender != their or env.kind != Kind.ANNOUNCEMENT:
            raise UserError("an announcement signed by someone else was ignored")
        ann = parse_record(Kind.ANNOUNCEMENT, opened.payload)
        assert isinstance(ann, Announcement)
        c = self.contacts.find(rec, address)
        if c is not None:
            self.contacts.announced(c, their, ann)

    def _dispatch(self, rec: IdentityRecord, env: Envelope, opened: Opened) -> None:
        if env.kind not in (Kind.DIRECT, Kind.RECEIPT):
            raise UserError(f"unexpected {env.kind.name.lower()} envelope for {rec.nick}")
        record = parse_record(env.kind, opened.payload)
        self._dispatch_record(rec, env, opened.sender, record,
                              record.prekey if isinstance(record, DirectMessage) else None)

    def _dispatch_record(self, rec: IdentityRecord, env: Envelope, sender_key: bytes,
                         record: object, prekey: SignedPrekey | None,
                         rid: bytes | None = None) -> None:
        """``rid``: the record's id, when the envelope carries several (a batch)."""
        rid = env.id if rid is None else rid
        me = self.ids.ident(rec).address
        sender = encode_address(sender_key)
        c = self.contacts.find(rec, sender)
        if c is not None and c.state == BLOCKED:
            return
        if isinstance(record, Receipt):
            if c is not None:
                self._show(ReceiptArrived(to=me, sender=sender,
                                          acked=tuple(i for i, _ in record.acked),
                                          message_ids=tuple(m for _, m in record.acked)),
                           rid, env.expiry)
            return
        assert isinstance(record, DirectMessage)
        if record.group is not None:  # a private group's state or message: bridge.groups
            self.parts.done(rid)
            self.seen.add(rid, env.expiry)
            if c is None:  # a stranger: no session with them is kept either
                self.sessions.forget(me, sender)
            if self.groups is not None:
                self.groups.on_record(me, sender, c is not None and c.state == ACCEPTED, record)
            return
        if record.chunk is not None and record.avatar:  # a contact's picture: avatarbook
            if self.on_avatar is not None:
                self.on_avatar(me, sender, c is not None and c.state == ACCEPTED, record,
                               rid)
            self.parts.done(rid)
            self.seen.add(rid, env.expiry)
            return
        if record.chunk is not None:  # a piece of a file: bridge.filerecv
            file = self.files.on_chunk(me, sender, c is not None and c.state == ACCEPTED,
                                       record, rid, env.expiry) if self.files else None
            if file is not None:  # the last piece: its key is kept until a client has it
                self._show(file, rid, env.expiry)
            else:
                self.parts.done(rid)
                self.seen.add(rid, env.expiry)
            return
        if record.act is not None or record.presence is not None:
            self._act(me, sender, c, env, record, sender_key, prekey, rid)
            return
        if not record.text and record.chat_state is None:
            self.parts.done(rid)  # no client will take it: its key goes now
            if c is not None:
                self.contacts.heard(c, sender_key, prekey)
            return  # a session confirmation (docs/sessions.md §11): nothing to show
        if record.chat_state is not None:
            self._chat_state(me, sender, c, env, record, rid)
            return
        key = (me, sender)
        event = MessageArrived(to=me, sender=sender, text=record.text, expiry=env.expiry,
                               sent_at_ms=record.sent_at_ms, envelope_id=rid,
                               receipt_wanted=record.receipt_wanted,
                               message_id=record.message_id)
        if c is None:  # a stranger: a contact request, in RAM until the person answers
            worth = work_per_byte(pow.work_bits(env.pow_digest, env.nonce), env.size)
            if not self.contacts.request(me, Waiting(event, sender_key, prekey),
                                         size=env.size, score=worth):
                self._opened.pop(env.id, None)  # not kept: it may be offered again later
                self.sessions.forget(me, sender)  # nor the session it started
            return
        self.contacts.heard(c, sender_key, prekey)
        if c.state == PENDING_IN:
            self._hold(key, event)
            return
        self._show(event, rid, env.expiry)

    def _chat_state(self, me: str, sender: str, c: ContactRecord | None, env: Envelope,
                    record: DirectMessage, rid: bytes) -> None:
        """Shown only with chat states on, from an accepted contact, and only if newer
        than anything shown from them (gossip may reorder; a message implies active).
        Never a contact request, never held."""
        if not self.chat_states or c is None or c.state != ACCEPTED:
            return
        assert record.chat_state is not None
        key = (me, sender)
        if record.sent_at_ms <= self._heard_ms.get(key, -1):
            return
        self._heard_ms[key] = record.sent_at_ms
        if self.clock() * 1000 - record.sent_at_ms > CHAT_STATE_STALE * 1000:
            return  # a catch-up: the person is no longer typing that
        self._show(ChatStateArrived(to=me, sender=sender, state=record.chat_state.element,
                                    sent_at_ms=record.sent_at_ms), rid, env.expiry)

    def _act(self, me: str, sender: str, c: ContactRecord | None, env: Envelope,
             record: DirectMessage, sender_key: bytes, prekey: SignedPrekey | None,
             rid: bytes) -> None:
        """An act on an earlier message, or a presence: only from an accepted contact
        (never a contact request), read markers and presences only when turned on."""
        accepted = c is not None and c.state == ACCEPTED
        if record.presence is not None:
            if self.presence and accepted:
                self.presences.arrived(me, sender, record.presence, record.sent_at_ms,
                                       env.expiry)
            return
        assert record.act is not None
        if not accepted or (record.act.kind is ActKind.DISPLAYED and not self.markers):
            self.parts.done(rid)  # its key is not kept for a client
            self.seen.add(rid, env.expiry)
            return
        assert c is not None
        self.contacts.heard(c, sender_key, prekey)
        self._show(MessageArrived(to=me, sender=sender, text=record.text, expiry=env.expiry,
                                  sent_at_ms=record.sent_at_ms, envelope_id=rid,
                                  receipt_wanted=record.receipt_wanted,
                                  message_id=record.message_id, act=record.act),
                   rid, env.expiry)

    # --- contact requests -------------------------------------------------------------------

    def _hold(self, key: tuple[str, str], event: MessageArrived) -> None:
        """Keep the message of a contact still pending in the key file (written so by
        an earlier version) until the person accepts, within caps."""
        held = self._held.get(key)
        if held is None and len(self._held) >= MAX_HELD_SENDERS:
            held = []  # not kept
        elif held is None:
            held = self._held[key] = []
        if len(held) >= MAX_HELD_PER_SENDER or key not in self._held:
            self._opened.pop(event.envelope_id, None)  # may be opened again later
            log.debug("a request's message from %s… not kept: too many wait", key[1][:8])
            return
        held.append(event)

    def release(self, owner: str, address: str) -> None:
        """The person accepted: show what the contact wrote while pending, in order."""
        self.show_released(owner, self._held.pop((owner, address), []))

    def show_released(self, owner: str, events: list[MessageArrived]) -> None:
        for event in sorted(events, key=lambda e: e.sent_at_ms):
            self._show(event, event.envelope_id, event.expiry)

    def drop_held(self, owner: str, address: str) -> None:
        self._held.pop((owner, address), None)

    def held_messages(self, owner: str, address: str) -> int:
        queue = self.contacts.requests.get(owner)
        req = queue.get(address) if queue is not None else None
        return len(self._held.get((owner, address), [])) + (len(req.held) if req else 0)

    def sizes(self) -> dict[str, int]:
        """How much the inbox remembers now, for the health page and tests."""
        return {"watched_tags": len(self.watching.table), "opened": len(self._opened),
                "unconfirmed": len(self._unconfirmed),
                "held": sum(map(len, self._held.values())), "senders_heard": len(self._heard_ms),
                "batch_records": len(self.parts)}

    def forget_identity(self, address: str) -> None:
        self.contacts.forget_identity(address)
        self.notes.forget(address)
        self._held = {k: v for k, v in self._held.items() if k[0] != address}
        self._heard_ms = {k: v for k, v in self._heard_ms.items() if k[0] != address}
        self.presences.forget(address)

    def subscribe_to(self, envelopes: Iterable[Envelope]) -> None:
        for env in envelopes:
            self.on_envelope(env)
