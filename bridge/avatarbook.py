"""Avatars between contacts: each identity's picture goes to its accepted contacts,
and each contact's latest picture is kept to show to the identity's clients.

Out: when the identity's clients set or change its picture (``share``), and when a
contact is accepted (``send_to``), the picture leaves for each accepted contact as a
file (``bridge.core.filechunks``, at most 3 chunks for ``MAX_AVATAR`` bytes) whose
chunk records carry the avatar flag (docs/envelope.md §10, flags 160) and the
picture's SHA-1 as message id: in the contact's session, direct first, by gossip
otherwise, each chunk living ``AVATAR_TTL`` (an hour) in the network. With
``[xmpp] share_avatar = false`` nothing leaves. To one contact at most
``SENDS_PER_HOUR`` pictures leave in any hour; a change made meanwhile waits, and only
the latest one waiting is sent. A removed picture is not sent: contacts keep showing
the last one.

In: only an accepted contact's chunks are read; a stranger's, a pending or blocked
contact's are dropped unread. Before a byte is kept, the first chunk must announce at
most ``MAX_AVATAR`` bytes and a PNG or JPEG media type; one picture is collected per
contact at a time (a newer one replaces it), ``MAX_PARTIAL`` in all, dropped
``IDLE`` after its latest chunk. A whole picture must match its BLAKE3 hash and its
SHA-1, and start as a PNG or JPEG does. At most ``CHANGES_PER_HOUR`` new pictures of
one contact are kept in any hour (later ones are dropped), one per contact, and
``MAX_KEPT`` in all (the least recently changed forgotten first). With storage
"sqlite" each is also written to disk, encrypted as received files are
(``FileStore.keep``); in memory mode they are in RAM only.

The first picture kept from a contact is answered with the identity's own (once):
a picture sent before the contact accepted was dropped by their daemon.

Each picture kept is confirmed to the contact's daemon with a receipt record (the
envelope that completed it, the picture's SHA-1 as message id). A picture sent and not
confirmed within ``AVATAR_TTL`` (its chunks expired unread: the contact's daemon was
away) goes again the next time the contact is heard from (a message, receipt,
presence or chat state), within the same budget. What waits for confirmation is in
RAM only: after a restart, a picture not confirmed before goes again only when it
changes or the contact is accepted again.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bridge.contacts import ContactBook
from bridge.core import crypto
from bridge.core.avatar import MAX_AVATAR, TYPES, ChangeRate, media_type
from bridge.core.errors import MalformedError, RemoteProtocolError, UserError
from bridge.core.filechunks import FileChunk, split
from bridge.core.reader import Reader
from bridge.core.records import DirectMessage
from bridge.events import (
    ChatStateArrived,
    ContactAvatarChanged,
    ContactState,
    Event,
    MessageArrived,
    PresenceArrived,
    ReceiptArrived,
)
from bridge.files import FileStore
from bridge.outbox import Outbox
from bridge.tasks import TaskSet

AVATAR_TTL = 3600  # a chunk's life in the network, as a file's (bridge.filesend.CHUNK_TTL)
SENDS_PER_HOUR = 4  # own pictures to one contact
CHANGES_PER_HOUR = 6  # a contact's new pictures kept
HOUR = 3600.0
IDLE = 3600.0
MAX_PARTIAL = 16
MAX_KEPT = 512
PREFIX = "avatar-"  # FileStore.keep names

Key = tuple[str, str]  # (identity, contact)
# (identity, contact, envelope ids, message ids): a receipt record to the contact
Receipts = Callable[[str, str, list[bytes], list[str]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Picture:
    data: bytes
    media_type: str
    sha1: str

    @classmethod
    def of(cls, data: bytes) -> Picture:
        """MalformedError unless a PNG or JPEG of at most ``MAX_AVATAR`` bytes."""
        mtype = media_type(data)
        return cls(bytes(data), mtype, hashlib.sha1(data).hexdigest())  # noqa: S324 - XEP-0084


@dataclass(slots=True)
class _Partial:
    first: FileChunk
    sha1: str
    touched: float
    pieces: dict[int, bytes] = field(default_factory=dict)

    def agrees(self, chunk: FileChunk, sha1: str) -> bool:
        f = self.first
        return (chunk.file_id, chunk.digest, chunk.size, chunk.media_type, sha1) == (
            f.file_id, f.digest, f.size, f.media_type, self.sha1)


class AvatarBook:
    def __init__(self, contacts: ContactBook, outbox: Outbox, files: FileStore,
                 tasks: TaskSet, emit: Callable[[Event], None], errors: Callable[[str], None],
                 *, share: bool = True, monotonic: Callable[[], float] = time.monotonic,
                 send_receipt: Receipts | None = None) -> None:
        self.contacts = contacts
        self.outbox = outbox
        self.files = files
        self.tasks = tasks
        self.emit = emit
        self.errors = errors
        self.enabled = share  # [xmpp] share_avatar: the identities' pictures leave
        self.monotonic = monotonic
        self.own: dict[str, Picture] = {}
        self.kept: OrderedDict[Key, Picture] = OrderedDict()
        self.partial: OrderedDict[Key, _Partial] = OrderedDict()
        self._rate_in: dict[Key, ChangeRate] = {}
        self._rate_out: dict[Key, ChangeRate] = {}
        self._waiting: dict[Key, Picture] = {}  # the next picture to send, the latest
        self._busy: set[Key] = set()
        self._sent: dict[Key, tuple[str, float]] = {}  # unconfirmed: (SHA-1, when it left)
        self.send_receipt = send_receipt  # confirms a contact's picture kept
        self.refused = 0  # chunks or pictures dropped
        self.sent_chunks = 0

    # --- the identity's own picture ---------------------------------------------------------

    def share(self, owner: str, data: bytes | None, *, send: bool = True) -> None:
        """The identity's picture is now ``data`` (None: none); ``send``: it changed,
        so it goes to every accepted contact. UserError unless a small PNG or JPEG."""
        if data is None:
            self.own.pop(owner, None)
            return
        try:
            picture = Picture.of(data)
        except MalformedError as exc:
            raise UserError(str(exc)) from None
        if self.own.get(owner) == picture:
            return
        self.own[owner] = picture
        if send:
            for c in self.contacts.contacts(owner):
                if c.state is ContactState.ACCEPTED:
                    self.send_to(owner, c.address)

    def send_to(self, owner: str, contact: str) -> None:
        """Send the identity's picture to one accepted contact, in the background."""
        picture = self.own.get(owner)
        if not self.enabled or picture is None:
            return
        key = (owner, contact)
        self._waiting[key] = picture
        if key not in self._busy:
            self._busy.add(key)
            self.tasks.spawn(self._drain(key), name="avatar")

    async def _drain(self, key: Key) -> None:
        try:
            while key in self._waiting:
                rate = self._rate_out.setdefault(key, ChangeRate(SENDS_PER_HOUR, HOUR))
                now = self.monotonic()
                if (at := rate.next_free(now)) > now:
                    await asyncio.sleep(at - now)  # the budget's next slot, not a guess
                picture = self._waiting.pop(key)
                if self.contacts.accepted(*key) is None:
                    continue
                rate.take(self.monotonic())
                # Set before it leaves: the confirmation may come before _send returns.
                self._sent[key] = (picture.sha1, self.monotonic())
                try:
                    await self._send(key, picture)
                except (UserError, RemoteProtocolError) as exc:
                    self._sent.pop(key, None)
                    self.errors(f"the avatar did not reach {key[1][:8]}…: {exc}")
        finally:
            self._busy.discard(key)

    async def _send(self, key: Key, picture: Picture) -> None:
        chunks = split(secrets.token_bytes(16), crypto.hash32(picture.data), "avatar",
                       picture.media_type, picture.data)

        async def one(chunk: FileChunk) -> None:
            await self.outbox.send_message(*key, "", receipt=False, message_id=picture.sha1,
                                           chunk=chunk, ttl=AVATAR_TTL, avatar=True)
            self.sent_chunks += 1

        # Each takes its place in the contact's queue when it starts, in order.
        await asyncio.gather(*(one(c) for c in chunks))

    # --- contacts' pictures ---------------------------------------------------------------

    def current(self, owner: str, contact: str) -> tuple[str, bytes] | None:
        """(media type, bytes) of the contact's latest picture kept."""
        p = self.kept.get((owner, contact))
        return None if p is None else (p.media_type, p.data)

    def on_event(self, event: Event) -> None:
        """A contact confirmed the identity's picture, or was heard from: a picture they
        did not confirm (their daemon was away longer than its chunks live) goes again."""
        if not isinstance(event, MessageArrived | ReceiptArrived | PresenceArrived
                          | ChatStateArrived):
            return
        key = (event.to, event.sender)
        sent = self._sent.get(key)
        if sent is None:
            return
        if isinstance(event, ReceiptArrived) and sent[0] in event.message_ids:
            del self._sent[key]
        elif self.monotonic() - sent[1] > AVATAR_TTL and key not in self._busy:
            del self._sent[key]
            self.send_to(*key)

    def on_chunk(self, me: str, sender: str, accepted: bool, record: DirectMessage,
                 envelope_id: bytes = b"") -> None:
        """Take one chunk of a contact's picture (dropped unless ``accepted``)."""
        chunk = record.chunk
        assert chunk is not None
        if (not accepted or chunk.size > MAX_AVATAR
                or chunk.media_type not in TYPES.values() or len(record.message_id) != 40):
            self.refused += 1
            return
        key, now = (me, sender), self.monotonic()
        for k, old in list(self.partial.items()):
            if now - old.touched > IDLE:
                del self.partial[k]
        p = self.partial.get(key)
        if p is None or p.first.file_id != chunk.file_id:  # a newer picture replaces one
            if p is None and len(self.partial) >= MAX_PARTIAL:
                self.refused += 1
                return
            p = _Partial(chunk, record.message_id, now)
            self.partial[key] = p
        elif not p.agrees(chunk, record.message_id):
            self.refused += 1
            return
        p.pieces[chunk.index] = chunk.data
        p.touched = now
        if len(p.pieces) < chunk.count:
            return
        del self.partial[key]
        if self._whole(key, b"".join(p.pieces[i] for i in range(chunk.count)), p, now) \
                and self.send_receipt is not None and len(envelope_id) == 32:
            self.tasks.spawn(self.send_receipt(me, sender, [envelope_id], [p.sha1]),
                             name="avatar receipt")

    def _whole(self, key: Key, data: bytes, p: _Partial, now: float) -> bool:
        """Keep a whole picture; whether it is now the one kept."""
        picture: Picture | None = None
        try:
            why, picture = "it did not match its hashes", Picture.of(data)
        except MalformedError as exc:
            why = str(exc)
        if picture is not None and (
                not crypto.equal(crypto.hash32(data), p.first.digest)
                or picture.sha1 != p.sha1 or picture.media_type != p.first.media_type):
            picture = None
        if picture is None:
            self.refused += 1
            self.errors(f"an avatar from {key[1][:8]}… was dropped: {why}")
            return False
        if self.kept.get(key) == picture:
            return True
        if not self._rate_in.setdefault(key, ChangeRate(CHANGES_PER_HOUR, HOUR)).take(now):
            self.refused += 1
            self.errors(f"{key[1][:8]}… changed their avatar over {CHANGES_PER_HOUR} times "
                        "in an hour; the latest was dropped")
            return False
        first = key not in self.kept
        self.kept.pop(key, None)
        self.kept[key] = picture
        self._keep(key, picture)
        while len(self.kept) > MAX_KEPT:
            self.forget(*next(iter(self.kept)))
        self.emit(ContactAvatarChanged(key[0], key[1], picture.sha1, picture.media_type,
                                       len(picture.data)))
        if first:
            self.send_to(*key)
        return True

    # --- at rest, and forgetting ------------------------------------------------------------

    @staticmethod
    def _name(key: Key) -> str:
        return PREFIX + crypto.hash32(f"{key[0]}\0{key[1]}".encode()).hex()[:32]

    def _keep(self, key: Key, picture: Picture) -> None:
        me, sender = (k.encode() for k in key)
        self.files.keep(self._name(key), bytes([len(me)]) + me + bytes([len(sender)])
                        + sender + picture.data)

    def load(self) -> None:
        """The contacts' pictures a previous run kept (storage "sqlite")."""
        for name, blob in self.files.kept(PREFIX):
            try:
                r = Reader(blob)
                key = (r.take(r.u8()).decode(), r.take(r.u8()).decode())
                picture = Picture.of(r.rest())
            except (RemoteProtocolError, ValueError):
                self.files.unkeep(name)
                continue
            if self.contacts_accepted(key):
                self.kept.setdefault(key, picture)  # one arrived meanwhile is newer
            else:
                self.files.unkeep(name)

    def contacts_accepted(self, key: Key) -> bool:
        try:
            return self.contacts.accepted(*key) is not None
        except UserError:  # the identity is gone
            return False

    def forget(self, owner: str, contact: str) -> None:
        """A contact removed or blocked: their picture goes, and what waits for them."""
        key = (owner, contact)
        self.kept.pop(key, None)
        self.partial.pop(key, None)
        self._waiting.pop(key, None)
        self._sent.pop(key, None)
        self.files.unkeep(self._name(key))

    def forget_identity(self, owner: str) -> None:
        self.own.pop(owner, None)
        for key in {k for k in (*self.kept, *self.partial, *self._waiting, *self._sent)
                    if k[0] == owner}:
            self.forget(*key)
