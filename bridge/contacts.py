"""The contact book: each identity's contacts, invitations and contact requests.

A contact is accepted (both ways) or blocked (nothing of theirs is shown); both
are the person's choice and live in the key file. A stranger who writes first
makes a contact request: held in RAM only, in a bounded queue per identity
(``bridge.core.requests``), never written anywhere until the person accepts it,
so strangers cost nothing durable. The book keeps what the network taught about
a contact — their newest verified prekey, their direct endpoint — and tells the
faces of every change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bridge.core.address import decode_address, fingerprint
from bridge.core.errors import UserError
from bridge.core.identity import SignedPrekey, newest_valid
from bridge.core.invite import Invite, encode_invite, parse_invite
from bridge.core.records import Announcement
from bridge.core.requests import Offered, Request, RequestQueue
from bridge.events import ContactInfo, ContactsChanged, ContactState, EventBus, MessageArrived
from bridge.identities import IdentityBook
from bridge.sessionview import describe
from bridge.store.keystore import ContactRecord, IdentityRecord

ACCEPTED = ContactState.ACCEPTED.value
PENDING_IN = ContactState.PENDING_IN.value
BLOCKED = ContactState.BLOCKED.value


class UnknownContactError(UserError):
    pass


@dataclass(frozen=True, slots=True)
class Waiting:
    """A message of a contact request, with what accepting it teaches."""

    event: MessageArrived
    sender_key: bytes
    prekey: SignedPrekey | None


# Called with (owner, messages) when the person accepts a request: show them.
Released = Callable[[str, list[MessageArrived]], None]


class ContactBook:
    def __init__(self, ids: IdentityBook, bus: EventBus, clock: Callable[[], int],
                 on_contact: Callable[[str, str], None]) -> None:
        self.ids = ids
        self.bus = bus
        self.clock = clock
        self.on_contact = on_contact  # (owner, address): watch that contact's tags anew
        self.on_release: Released = lambda owner, events: None
        self.requests: dict[str, RequestQueue[Waiting]] = {}  # per identity, RAM only

    # --- lookups ------------------------------------------------------------------

    @staticmethod
    def find(rec: IdentityRecord, address: str) -> ContactRecord | None:
        for c in rec.contacts:
            if c.address == address:
                return c
        return None

    def need(self, owner: str, address: str) -> ContactRecord:
        c = self.find(self.ids.rec(owner), address)
        if c is None:
            raise UnknownContactError(f"{address[:12]}… is not a contact of this identity")
        return c

    @staticmethod
    def info(owner: str, c: ContactRecord) -> ContactInfo:
        return ContactInfo(owner=owner, address=c.address, petname=c.petname,
                           state=ContactState(c.state),
                           fingerprint=fingerprint(decode_address(c.address)),
                           session=describe(c), session_note=c.session_note)

    def contacts(self, owner: str) -> list[ContactInfo]:
        rec = self.ids.rec(owner)
        return [*(self.info(owner, c) for c in rec.contacts),
                *(self._request_info(owner, r.sender) for r in self.requests.get(owner, ()))]

    @staticmethod
    def _request_info(owner: str, address: str) -> ContactInfo:
        return ContactInfo(owner=owner, address=address, petname=address[:8],
                           state=ContactState.PENDING_IN,
                           fingerprint=fingerprint(decode_address(address)))

    def pending(self, owner: str, address: str) -> bool:
        queue = self.requests.get(owner)
        return queue is not None and address in queue

    def accepted(self, owner: str, address: str) -> ContactRecord | None:
        c = self.find(self.ids.rec(owner), address)
        return c if c is not None and c.state == ACCEPTED else None

    # --- changes a person makes ---------------------------------------------------------

    def _changed(self, owner: str, c: ContactRecord, *, soon: bool = False) -> ContactInfo:
        if soon:
            self.ids.save_soon()
        else:
            self.ids.keystore.save()
        self.on_contact(owner, c.address)
        info = self.info(owner, c)
        self.bus.emit(ContactsChanged(owner=owner, contact=info))
        return info

    def add(self, owner: str, link_or_address: str, petname: str = "") -> tuple[ContactInfo,
                                                                                Invite]:
        """Accept the contact a link or address names; the parsed invitation too (its
        peers are for the node)."""
        rec = self.ids.rec(owner)
        invite = parse_invite(link_or_address)
        if invite.address == owner:
            raise UserError("that is this identity's own address")
        petname = " ".join(petname.split())[:64] or invite.nick or invite.address[:8]
        c = self.find(rec, invite.address) or self._promote(rec, invite.address)
        if c is None:
            c = ContactRecord(address=invite.address, petname=petname, state=ACCEPTED,
                              added_at=self.clock())
            rec.contacts.append(c)
        else:
            c.petname = petname
            c.state = ACCEPTED
        return self._changed(owner, c), invite

    def accept(self, owner: str, address: str) -> ContactInfo:
        c = self._promote(self.ids.rec(owner), address) or self.need(owner, address)
        c.state = ACCEPTED
        return self._changed(owner, c)

    def _promote(self, rec: IdentityRecord, address: str) -> ContactRecord | None:
        """A request the person answers becomes a contact (they wrote to us: pair
        tags are safe) and its messages are shown; None if there is no request."""
        owner = self.ids.ident(rec).address
        req = self.requests.get(owner, RequestQueue()).pop(address)
        if req is None:
            return None
        c = ContactRecord(address=address, petname=address[:8], state=ACCEPTED,
                          heard_from=True, added_at=self.clock())
        for waiting in req.items:
            if waiting.prekey is not None:
                self.learn_prekeys(c, waiting.sender_key, [waiting.prekey])
        rec.contacts.append(c)
        self.on_release(owner, [w.event for w in req.items])
        return c

    def block(self, owner: str, address: str) -> ContactInfo:
        rec = self.ids.rec(owner)
        decode_address(address)
        self.requests.get(owner, RequestQueue()).pop(address)  # its messages are dropped
        c = self.find(rec, address)
        if c is None:
            c = ContactRecord(address=address, petname=address[:8], state=BLOCKED,
                              added_at=self.clock())
            rec.contacts.append(c)
        c.state = BLOCKED
        return self._changed(owner, c)

    def remove(self, owner: str, address: str) -> None:
        rec = self.ids.rec(owner)
        if self.requests.get(owner, RequestQueue()).pop(address) is not None:
            self.bus.emit(ContactsChanged(owner=owner, removed=address))  # dismissed
            return
        rec.contacts.remove(self.need(owner, address))
        self.ids.keystore.save()
        self.on_contact(owner, address)
        self.bus.emit(ContactsChanged(owner=owner, removed=address))

    def writable(self, owner: str, address: str) -> ContactRecord | None:
        """The contact a message to ``address`` goes to (None: not yet a contact);
        UserError when it is blocked."""
        c = self.find(self.ids.rec(owner), address)
        if c is not None and c.state == BLOCKED:
            raise UserError("this contact is blocked; unblock it to write to it")
        return c

    def written_to(self, owner: str, address: str) -> ContactRecord:
        """Writing to an address makes it an accepted contact (answering a request
        accepts it)."""
        rec = self.ids.rec(owner)
        c = self.find(rec, address)
        if c is None and self.pending(owner, address):
            self.accept(owner, address)
            return self.need(owner, address)
        if c is None:
            c = ContactRecord(address=address, petname=address[:8], state=ACCEPTED,
                              added_at=self.clock())
            rec.contacts.append(c)
            self._changed(owner, c)
        return c

    def invite_link(self, owner: str, peers: Iterable[str]) -> str:
        rec = self.ids.rec(owner)
        return encode_invite(Invite(public=self.ids.ident(rec).public, nick=rec.nick,
                                    peers=tuple(peers)))

    # --- what the network teaches --------------------------------------------------------

    def request(self, owner: str, waiting: Waiting, *, size: int, score: float) -> bool:
        """A stranger wrote: hold the message in the identity's request queue (RAM
        only) and show the request; False when the queue does not keep it."""
        queue = self.requests.setdefault(owner, RequestQueue())
        sender = waiting.event.sender
        offered: Offered[Waiting] = queue.offer(sender, waiting, size=size,
                                                expiry=waiting.event.expiry, score=score,
                                                now=self.clock())
        for gone in offered.evicted:
            self.bus.emit(ContactsChanged(owner=owner, removed=gone.sender))
        if offered.new:
            self.bus.emit(ContactsChanged(owner=owner,
                                          contact=self._request_info(owner, sender)))
        return offered.kept

    def purge_requests(self, now: int) -> None:
        """Requests whose every message has left the network go too."""
        for owner, queue in self.requests.items():
            gone: list[Request[Waiting]] = queue.purge(now)
            for req in gone:
                self.bus.emit(ContactsChanged(owner=owner, removed=req.sender))

    def forget_identity(self, owner: str) -> None:
        self.requests.pop(owner, None)

    def heard(self, c: ContactRecord, sender: bytes, prekey: SignedPrekey | None) -> None:
        """A message from a known contact: they know us now (pair tags are safe), and
        they may have sent a newer prekey."""
        changed = not c.heard_from
        c.heard_from = True
        if prekey is not None:
            old = c.prekey
            self.learn_prekeys(c, sender, [prekey])
            changed = changed or old != c.prekey
        if changed:  # what is watched does not depend on it
            self.ids.save_soon()

    def announced(self, c: ContactRecord, their: bytes, ann: Announcement) -> None:
        before = c.prekey
        self.learn_prekeys(c, their, ann.prekeys)
        if not self.announced_endpoint(c, ann.issued_at, ann.endpoint) and c.prekey != before:
            self.ids.save_soon()

    def announced_endpoint(self, c: ContactRecord, issued_at: int, endpoint: str) -> bool:
        """The endpoint of an announcement issued at ``issued_at``; True if it changed
        what is kept (and a save is on its way)."""
        # Envelopes arrive in any order: an older announcement must not take back a
        # newer endpoint.
        if issued_at < c.announced_at or (issued_at, endpoint) == (c.announced_at, c.endpoint):
            return False
        c.announced_at, c.endpoint = issued_at, endpoint
        self.ids.save_soon()
        return True

    def learn_prekeys(self, c: ContactRecord, their: bytes,
                      prekeys: Iterable[SignedPrekey]) -> None:
        current = SignedPrekey.parse(bytes.fromhex(c.prekey)) if c.prekey else None
        best = newest_valid(current, prekeys, their, self.clock())
        if best is not None:
            c.prekey = best.encode().hex()
