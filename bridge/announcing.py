"""Announcements to contacts: each identity's version-2 announcement (its hybrid
prekeys, nick and endpoint) also goes to each accepted contact, sealed to the
contact and tagged in the contact's shard, so that a contact whose node carries
another part of the network (``[p2p] shards``, ``carry_mb_day``, ``--light``) than
the identity's own still learns them (docs/sharding.md, docs/envelope.md §9).

Out: the record is the one the public announcement carries (``HybridAnnouncement``);
the envelope is version 2, kind announcement, a sealed body whose ``recipient`` is
the contact, sealed to the contact's newest live version-1 prekey (else to the X25519
form of its identity key) and tagged like a direct message: the pair tag to the
contact once they have written to us, else their version-2 address tag. It leaves
when a contact becomes accepted (added, accepted, written to) and after each public
announcement (daily, on new prekeys, at start), but only to a contact to whom what it
says (``core.contact_announce.digest``) differs from what was last sent to them (kept
in the key file, ``ContactRecord.told``): nothing leaves daily if nothing changed. At
most one to a contact in any ``MIN_GAP`` seconds; a change made meanwhile waits, and
the announcement that leaves is the one current then. It is published on the node, as
the public one is (never delivered direct). Nothing leaves with sessions off.

In: taken only under our address tag or the pair tag to us, only from an accepted
contact who signed it (``core.contact_announce.check_sender``; a stranger's under our
address tag is dropped quietly: someone who added us first sends it), then read as a
public one is: the newest valid hybrid prekey is kept, and the endpoint only if the
announcement is newer than the one it came from. The first one taken from a
contact in a run of the daemon is answered with ours (once, even if unchanged): ours
may have gone before the contact accepted us, and their daemon dropped it then.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable

from bridge.contacts import ACCEPTED, ContactBook
from bridge.core.address import encode_address
from bridge.core.body import open_sealed, seal_sealed, sealed_bucket
from bridge.core.contact_announce import NotFromContactError, check_sender, digest
from bridge.core.envelope import Envelope, Kind
from bridge.core.errors import RemoteProtocolError, UserError
from bridge.core.records import HybridAnnouncement, parse_record
from bridge.core.watch import Watch
from bridge.events import ContactsChanged, ContactState, Event
from bridge.identities import IdentityBook
from bridge.outbox import Outbox
from bridge.sessionbook import SessionBook
from bridge.store.keystore import IdentityRecord
from bridge.tasks import TaskSet

log = logging.getLogger(__name__)

MIN_GAP = 600.0  # seconds between two announcements to one contact
MAX_ANSWERED = 4096  # (identity, contact) pairs answered in this run, remembered

Key = tuple[str, str]  # (identity, contact)


class ContactAnnouncer:
    def __init__(self, ids: IdentityBook, contacts: ContactBook, outbox: Outbox,
                 sessions: SessionBook, tasks: TaskSet, errors: Callable[[str], None], *,
                 monotonic: Callable[[], float] = time.monotonic,
                 min_gap: float = MIN_GAP) -> None:
        self.ids = ids
        self.contacts = contacts
        self.outbox = outbox
        self.sessions = sessions
        self.tasks = tasks
        self.errors = errors
        self.monotonic = monotonic
        self.min_gap = min_gap
        self._waiting: set[Key] = set()  # a send is due (what it says is read then)
        self._forced: set[Key] = set()  # due even if unchanged (an answer)
        self._busy: set[Key] = set()
        self._last: dict[Key, float] = {}  # when the last one to the contact left
        self._answered: set[Key] = set()
        self.sent = 0  # announcements sent to contacts, taken from them, dropped
        self.taken = 0
        self.refused = 0

    @property
    def idle(self) -> bool:
        """Nothing waits to leave (for tests and the health page)."""
        return not self._busy

    # --- out ------------------------------------------------------------------------------

    def current(self, rec: IdentityRecord) -> HybridAnnouncement | None:
        """The announcement the identity would send now (None: no live hybrid prekey)."""
        prekeys = self.ids.live_hybrid_prekeys(rec)
        if not prekeys:
            return None
        return HybridAnnouncement(self.outbox.clock(), prekeys, rec.nick[:32],
                                  self.outbox.endpoint[:255])

    def changed(self, rec: IdentityRecord) -> None:
        """The identity announced (daily, new prekeys, a start): each accepted contact to
        whom what it says is new gets it."""
        owner = self.ids.ident(rec).address
        for c in list(rec.contacts):
            if c.state == ACCEPTED:
                self.offer(owner, c.address)

    def on_event(self, event: Event) -> None:
        """A contact became accepted (added, accepted, written to): it gets ours."""
        if (isinstance(event, ContactsChanged) and event.contact is not None
                and event.contact.state is ContactState.ACCEPTED):
            self.offer(event.owner, event.contact.address)

    def offer(self, owner: str, contact: str, *, again: bool = False) -> None:
        """Send ours to one contact in the background if what it says is new to them
        (``again``: even if not)."""
        if self.outbox.sessions is None:
            return  # sessions off: no hybrid prekeys to tell of
        key = (owner, contact)
        if again:
            self._forced.add(key)
        if self._due(key) is None:
            self._forced.discard(key)
            return  # decided now: nothing new to this contact
        self._waiting.add(key)
        if key not in self._busy:
            self._busy.add(key)
            self.tasks.spawn(self._drain(key), name="announcement to a contact")

    def _due(self, key: Key) -> HybridAnnouncement | None:
        """What to send to the contact now, or None if nothing (not accepted any more,
        no live prekey, nothing new and no answer due)."""
        try:
            rec = self.ids.rec(key[0])
            c = self.contacts.accepted(*key)
        except UserError:
            return None  # the identity is gone
        ann = self.current(rec) if c is not None else None
        if c is None or ann is None or (c.told == digest(ann) and key not in self._forced):
            return None
        return ann

    async def _drain(self, key: Key) -> None:
        try:
            while key in self._waiting:
                if self._due(key) is None:
                    self._waiting.discard(key)
                    self._forced.discard(key)
                    continue
                last = self._last.get(key)
                if last is not None and (wait := last + self.min_gap - self.monotonic()) > 0:
                    await asyncio.sleep(wait)  # the contact's next free slot, not a guess
                self._waiting.discard(key)
                ann = self._due(key)  # the one current now: changes meanwhile collapse
                self._forced.discard(key)
                if ann is None:
                    continue
                self._last[key] = self.monotonic()
                try:
                    await self._send(key, ann)
                except (UserError, RemoteProtocolError) as exc:
                    self.errors(f"the announcement to {key[1][:8]}… did not leave: {exc}")
        finally:
            self._busy.discard(key)

    async def _send(self, key: Key, ann: HybridAnnouncement) -> None:
        payload = ann.encode()
        stamp = await self.outbox.stamp_for(sealed_bucket(len(payload)))
        rec = self.ids.rec(key[0])
        c = self.contacts.accepted(*key)
        if c is None:
            return  # removed or blocked while the stamp was made
        ident, their, kex, tag = self.outbox.route(rec, key[1])
        raw = await self.outbox.pool.run_crypto(
            seal_sealed, sender=ident, recipient=their, kex_public=kex,
            kind=Kind.ANNOUNCEMENT, tag=tag, stamp=stamp, payload=payload,
            ephemeral_secret=secrets.token_bytes(32))
        del ident  # see Outbox._sealed
        await self.outbox.node.publish(raw)  # by gossip, as the public one
        c.told = digest(ann)
        self.ids.save_soon()
        self.sent += 1

    # --- in -------------------------------------------------------------------------------

    def take(self, env: Envelope, w: Watch) -> None:
        """A version-2 announcement under one of our direct tags: a contact's, to us.
        UserError (or a RemoteProtocolError) when it is not taken."""
        rec = self.ids.rec(w.owner)
        ident = self.ids.ident(rec)
        opened = open_sealed(env, ident.public, self.ids.opening_keys(rec))
        sender = encode_address(opened.sender)
        c = self.contacts.accepted(w.owner, sender)
        try:
            check_sender(w, sender, c is not None)
        except NotFromContactError:
            self.refused += 1
            if c is None and not w.pair:
                # someone who added us and whom we have not accepted (yet): the usual
                # case, not an error; nothing of it is kept
                log.debug("an announcement from %s… dropped: not a contact", sender[:8])
                return
            raise
        assert c is not None
        ann = parse_record(Kind.ANNOUNCEMENT, opened.payload, version=2)
        assert isinstance(ann, HybridAnnouncement)
        self.sessions.learn_hybrid_prekey(c, opened.sender, ann.prekeys)
        self.contacts.announced_endpoint(c, ann.issued_at, ann.endpoint)
        self.taken += 1
        key = (w.owner, sender)
        if key not in self._answered:
            if len(self._answered) >= MAX_ANSWERED:
                self._answered.clear()
            self._answered.add(key)
            self.offer(*key, again=True)
