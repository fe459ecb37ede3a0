"""Stanzas <-> service calls and events: the translation layer.

Named by direction, as slidge does: ``on_*`` handles what arrives from an
XMPP client and goes to the network; ``send_*`` handles what the service's
event stream reports and goes to XMPP clients.

- ``<message type=chat to=ADDRESS@p2p.D>`` -> ``service.send_message`` as a task
  (PoW runs inside it; the client is never frozen). Tasks start in the order the
  stanzas came, and the service fixes a message's place in its contact's queue
  before its first ``await``, so sends to one contact are pipelined (the next is
  sealed and stamped while one is still on its way) and still leave in the order
  they were typed. A failure comes back as ``<message type=error>`` with the
  error's text (``errors.py``).
- XEP-0184: a ``<request/>`` asks the network for a delivery ack; a client's
  ``<received id=.../>`` for a message we delivered becomes ``send_receipt``.
- XEP-0085 chat states stay local (dropped) unless the user turned them on
  (``[xmpp] chat_states``, ``--chat-states``); then a client's state, standalone
  or beside a body, goes to ``service.send_chat_state`` (which rate-limits and
  collapses them), an arriving ``ChatStateArrived`` goes to the identity's
  available clients only (never held for later), and live messages from the
  network carry <active/>.
- Corrections, reactions, retractions and XEP-0333 read markers (these only with
  ``[xmpp] markers``) go to ``service.send_act`` (``acts.py``), replies with
  ``send_message``; presence with ``[xmpp] presence`` (``presences.py``).
- XEP-0280: a message one client sends is copied to the account's other
  clients that enabled carbons once the service has taken it (so the copy can
  carry its XEP-0359 archive id, the one MAM answers with); a failed send is
  not copied. Messages from the network go to every available client, so no
  "received" carbons are needed.
- Events with no client online wait in a bounded in-memory queue and are
  delivered at the next initial presence (with a XEP-0203 delay stamp); what
  does not fit is counted and the person told (``offline.py``).
- ``IdentitiesChanged``: the sessions of a deleted identity end (with a
  not-authorized stream error on the embedded listener; the component unlinks
  the user), and a rename reaches open sessions (their vCard, the room nick).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slixmpp import Presence

from bridge.api import MAX_RECORDS, ServiceAPI, archive_id
from bridge.core.errors import UserError
from bridge.events import (
    ChatStateArrived,
    ContactAvatarChanged,
    ContactsChanged,
    Event,
    GroupChanged,
    GroupMessageArrived,
    IdentitiesChanged,
    MessageArrived,
    PresenceArrived,
    ReceiptArrived,
    RoomMessageArrived,
    SessionNotice,
)
from bridge.tasks import TaskSet
from bridge.xmpp.acts import ClientActs, reply_of
from bridge.xmpp.bot import Bot
from bridge.xmpp.delivery import CHATSTATES_NS, HINTS_NS, Delivery
from bridge.xmpp.errors import XmppError, error_reply_to
from bridge.xmpp.groupmuc import GroupRooms
from bridge.xmpp.jids import Domains, parse_jid
from bridge.xmpp.muc import PublicRoom
from bridge.xmpp.presences import PresenceFace
from bridge.xmpp.roster import RosterMap
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_message
from bridge.xmpp.streamerror import StreamError
from bridge.xmpp.upload import send_file

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

log = logging.getLogger(__name__)

_C = "{jabber:client}"
RECEIPTS_NS = "urn:xmpp:receipts"
CARBONS_NS = "urn:xmpp:carbons:2"
SID_NS = "urn:xmpp:sid:0"
CHAT_STATES = ("active", "composing", "paused", "inactive", "gone")
_PRESENCE_TYPES_SUBSCRIPTION = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")


def _chat_state(el: ET.Element) -> str | None:
    """The XEP-0085 state a message carries, if any."""
    for child in el:
        ns, _, name = child.tag[1:].partition("}")
        if ns == CHATSTATES_NS and name in CHAT_STATES:
            return name
    return None


def _without_stanza_ids(el: ET.Element) -> ET.Element:
    """A copy of a client's stanza for its other clients, minus any XEP-0359
    stanza-id it carried: only the server names archive ids (XEP-0359 §4)."""
    copied = copy.deepcopy(el)
    for sid in copied.findall(f"{{{SID_NS}}}stanza-id"):
        copied.remove(sid)
    return copied


# per identity: messages being sent at once (those to one contact in a session queue up
# and leave as batches of up to MAX_RECORDS: bridge.batching)
SENDS_IN_FLIGHT = MAX_RECORDS

class Gateway:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains) -> None:
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self.roster = RosterMap(service, sessions, domains)
        self.room = PublicRoom(service, sessions, domains, self._spawn)
        self.groups = GroupRooms(service, sessions, domains, self._spawn)
        self.bot = Bot(service, domains)
        self.tasks = TaskSet("XMPP gateway", logger=log)
        self.delivery = Delivery(service, sessions, domains)
        self.acts = ClientActs(service, self._carbon)
        self.presences = PresenceFace(service, sessions, domains, self.roster.presence)
        # what ends the sessions of a deleted identity (the component unlinks its user)
        self.identity_deleted: Callable[[str], None] = self.end_sessions
        # a contact's new picture, shown to the clients; the known ones to a client that
        # comes online (avatars.py, with PEP)
        self.contact_avatar: Callable[[ContactAvatarChanged], None] = lambda event: None
        self.avatars_at_login: Callable[[Session], None] = lambda conn: None
        self._unsubscribe: Callable[[], None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Messages of one identity being sealed and stamped at once: a pasted burst
        # queues here, in order (the semaphore is fair), instead of filling the worker
        # pool ahead of every other identity's messages.
        self._in_flight: dict[str, asyncio.Semaphore] = {}

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unsubscribe = self.service.subscribe(self._listener)

    async def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        await self.tasks.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.tasks.spawn(coro, name=getattr(coro, "__qualname__", ""))

    # --- from XMPP ---------------------------------------------------------------------

    def on_message(self, conn: Session, el: ET.Element) -> None:
        assert conn.owner is not None
        mtype = el.get("type", "normal")
        if mtype == "error":
            return  # never answer an error with an error
        to = parse_jid(el.get("to"))
        if to is None or to.bare == conn.bare:
            self._to_own_account(conn, el, to.resource if to else "")
            return
        if self.groups.handles(to):
            self.groups.on_message(conn, el, to)
            return
        if self.domains.is_room(to):
            self.room.on_message(conn, el, to)
            return
        body = el.findtext(_C + "body")
        if to.bare == self.domains.bot:
            if body is not None and body.strip():
                self._carbon(conn, el)
                self._bot_reply(conn, body)
            return
        address = self.domains.address_of(to)
        if address is None:
            raise XmppError("service-unavailable",
                            f"this server only reaches P2P contacts ({self.domains.contacts})")
        if self.groups.direct_invite(conn, el, address):
            return  # an XEP-0249 invitation to one of our groups
        received = el.find(f"{{{RECEIPTS_NS}}}received")
        if received is not None:
            self._ack(conn.owner.address, address, received.get("id", ""))
        state = (_chat_state(el) if mtype in ("chat", "normal")
                 and self.service.chat_states_enabled() else None)
        if self.acts.on_message(conn, el, address, body):
            return  # a correction, reaction, retraction or read marker
        if body is None:
            if state is not None:
                self._spawn(self._send_chat_state(conn.owner.address, address, state))
            return  # markers, corrections without text (and chat states unless on): local
        if mtype not in ("chat", "normal"):
            raise XmppError("bad-request", f"cannot send a {mtype} message to a contact",
                            "modify")
        archived = send_file(self.service, conn, el, address, body)  # an upload's URL
        if archived is not None:
            self._carbon(conn, el, archived if self.delivery.stanza_ids else "")
            return
        msg_id = el.get("id", "")
        wants_receipt = bool(msg_id) and el.find(f"{{{RECEIPTS_NS}}}request") is not None
        self._spawn(self._send(conn, el, address, body, wants_receipt, msg_id, state))

    async def _send_chat_state(self, owner: str, address: str, state: str) -> None:
        try:
            await self.service.send_chat_state(owner, address, state)
        except Exception as exc:  # a lost typing notification is not worth an error
            log.debug("chat state to %s not sent: %s", address[:8], exc)

    async def _send(self, conn: Session, el: ET.Element, address: str, body: str,
                    wants_receipt: bool, msg_id: str, state: str | None = None) -> None:
        """Send, then copy to the other clients (XEP-0280) with the archive id the
        message got (XEP-0359): the carbon is what MAM returns later, id included."""
        assert conn.owner is not None
        attrs = dict(el.attrib)
        owner = conn.owner.address
        limit = self._in_flight.setdefault(owner, asyncio.Semaphore(SENDS_IN_FLIGHT))
        try:
            # The semaphore hands out places in the order they were asked for, and
            # nothing else awaits before the call: the service takes the message's
            # place in its contact's queue in the order the stanzas came.
            async with limit:
                envelope_id = await self.service.send_message(
                    owner, address, body, receipt=wants_receipt, message_id=msg_id,
                    **reply_of(el, conn.bare)
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            conn.send(error_reply_to("message", attrs, conn.jid.full, exc, body))
            return
        self._carbon(conn, el, archive_id(envelope_id) if self.delivery.stanza_ids else "")
        if wants_receipt:
            self.delivery.sent.remember(envelope_id, msg_id)
        if state is not None:  # after the message: its <active/> is implied, others are news
            await self._send_chat_state(owner, address, state)

    def _ack(self, owner: str, address: str, stanza_id: str) -> None:
        found = self.delivery.asked.pop((owner, address, stanza_id), None)
        if found is None:
            return
        envelope_id, message_id = found
        self._spawn(self._send_receipt(owner, address, envelope_id, message_id))

    async def _send_receipt(self, owner: str, address: str, envelope_id: bytes,
                            message_id: str) -> None:
        try:
            await self.service.send_receipt(owner, address, [envelope_id],
                                            [message_id] if message_id else [])
        except Exception as exc:  # a lost receipt is not worth bothering the person
            log.debug("receipt to %s not sent: %s", address[:8], exc)

    def _carbon(self, conn: Session, el: ET.Element, archived: str = "") -> None:
        if el.find(f"{{{CARBONS_NS}}}private") is not None:
            return
        if el.find(f"{{{HINTS_NS}}}no-copy") is not None:
            return
        assert conn.owner is not None
        for other in self.sessions.of(conn.owner.address):
            if other is conn or not other.carbons:
                continue
            inner = new_message(_without_stanza_ids(el))
            if archived:
                ET.SubElement(inner.xml, f"{{{SID_NS}}}stanza-id", by=conn.bare, id=archived)
            wrapper = new_message()
            wrapper["from"] = conn.bare
            wrapper["to"] = other.jid.full
            wrapper["type"] = inner["type"] or "normal"
            wrapper["carbon_sent"] = inner
            other.send(wrapper)

    def _to_own_account(self, conn: Session, el: ET.Element, resource: str) -> None:
        assert conn.owner is not None
        targets = (
            [s for s in [self.sessions.resource(conn.owner.address, resource)] if s]
            if resource
            else [s for s in self.sessions.available(conn.owner.address) if s is not conn]
        )
        if resource and not targets:
            raise XmppError("recipient-unavailable", "that client is not connected", "wait")
        for target in targets:
            forwarded = _without_stanza_ids(el)
            forwarded.set("to", target.jid.full)
            target.send(forwarded)

    def _bot_reply(self, conn: Session, body: str) -> None:
        assert conn.owner is not None
        answer = self.bot.answer(conn.owner, body)
        for session in self.sessions.available(conn.owner.address) or [conn]:
            reply = new_message()
            reply["to"] = session.jid.full
            reply["from"] = self.domains.bot
            reply["type"] = "chat"
            reply["body"] = answer
            session.send(reply)

    def on_presence(self, conn: Session, el: ET.Element) -> None:
        ptype = el.get("type", "")
        to = parse_jid(el.get("to"))
        if to is None:
            self._own_presence(conn, el, ptype)
            return
        if self.groups.handles(to):
            self.groups.on_presence(conn, el, to)
            return
        if self.domains.is_room(to):
            self.room.on_presence(conn, el, to)
            return
        if ptype in _PRESENCE_TYPES_SUBSCRIPTION:
            self.roster.on_subscription(conn, ptype, to.bare)
            return
        if ptype == "probe":
            assert conn.owner is not None
            address = self.domains.address_of(to)
            for contact in self.service.contacts(conn.owner.address):
                if contact.address == address:
                    self.roster.contact_presence(conn, contact)
        # directed presence to a contact: nothing crosses the network for it

    def _own_presence(self, conn: Session, el: ET.Element, ptype: str) -> None:
        assert conn.owner is not None
        if ptype not in ("", "unavailable"):
            return
        first = ptype == "" and not conn.available
        conn.available = ptype == ""
        self.presences.own(conn, el)
        others = [s for s in self.sessions.of(conn.owner.address) if s.available]
        # RFC 6121 §4.2.2: the presence goes to all the account's available resources
        for session in set(others) | {conn}:
            copy_el = copy.deepcopy(el)
            copy_el.set("to", session.jid.full)
            session.send(copy_el)
        if ptype == "unavailable":
            self.room.leave(conn)
            return
        if first:
            for session in others:
                if session is not conn:
                    hello = Presence()
                    hello["from"] = session.jid.full
                    hello["to"] = conn.jid.full
                    conn.send(hello)
            self.roster.initial_presence(conn)
            self.avatars_at_login(conn)
            self.delivery.flush_offline(conn)
            self.groups.on_login(conn)

    def on_disconnect(self, conn: Session) -> None:
        self.presences.own(conn, None)
        if conn.owner is None or not conn.available:
            return
        conn.available = False
        for session in self.sessions.available(conn.owner.address):
            gone = Presence()
            gone["from"] = conn.jid.full
            gone["to"] = session.jid.full
            gone["type"] = "unavailable"
            session.send(gone)

    # --- to XMPP -----------------------------------------------------------------------

    def _listener(self, event: Event) -> None:
        # The service may call from any thread; handling always happens on our
        # loop, in the order events were emitted (per-sender order is kept).
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.dispatch, event)

    def dispatch(self, event: Event) -> None:
        try:
            if isinstance(event, MessageArrived):
                self.delivery.send_message(event)
            elif isinstance(event, ReceiptArrived):
                self.delivery.send_receipt(event)
            elif isinstance(event, ChatStateArrived):
                self.delivery.send_chat_state(event)
            elif isinstance(event, PresenceArrived):
                self.presences.send_arrived(event)
            elif isinstance(event, ContactsChanged):
                self.send_contact(event)
            elif isinstance(event, ContactAvatarChanged):
                self.contact_avatar(event)
            elif isinstance(event, RoomMessageArrived):
                self.room.send_room_message(event)
            elif isinstance(event, GroupMessageArrived):
                self.groups.on_message_arrived(event)
            elif isinstance(event, GroupChanged):
                self.groups.on_changed(event)
            elif isinstance(event, IdentitiesChanged):
                self.send_identities()
            elif isinstance(event, SessionNotice):
                self.send_notice(event)
        except Exception:
            log.exception("could not hand %s to XMPP clients", type(event).__name__)

    def send_contact(self, event: ContactsChanged) -> None:
        self.roster.push(event.owner, event.contact, event.removed)
        for conn in self.sessions.available(event.owner):
            if event.contact is not None:
                self.roster.contact_presence(conn, event.contact)
            elif event.removed is not None:
                conn.send(self.roster.presence(conn, self.domains.contact(event.removed),
                                                "unavailable"))

    def send_notice(self, event: SessionNotice) -> None:
        """The bot tells the identity's clients what a contact's sessions did (the
        web UI keeps it with the contact for a client that is not connected)."""
        for conn in self.sessions.available(event.to):
            msg = new_message()
            msg["to"] = conn.jid.full
            msg["from"] = self.domains.bot
            msg["type"] = "chat"
            msg["body"] = f"{event.text}\n(contact: {self.domains.contact(event.sender)})"
            conn.send(msg)

    def send_identities(self) -> None:
        """Identities changed (web UI, CLI): a deleted one's sessions end, a rename
        reaches the open ones."""
        owners = {s.owner.address for s in self.sessions.all() if s.owner is not None}
        for owner in sorted(owners | set(self.delivery.offline.owners())):
            try:
                identity = self.service.identity(owner)
            except UserError:
                self.delivery.offline.discard(owner)
                self.identity_deleted(owner)
                continue
            for conn in self.sessions.of(owner):
                old, conn.owner = conn.owner, identity
                if old is not None and old.nick != identity.nick:
                    self.room.rename(conn, old.nick, identity.nick)

    def end_sessions(self, owner: str) -> None:
        self.groups.forget(owner)  # group messages and invitations kept for its clients
        sessions = self.sessions.of(owner)
        if sessions:
            log.info("identity %s… was deleted: ending its %d XMPP sessions", owner[:8],
                     len(sessions))
        for conn in sessions:
            conn.close(StreamError("not-authorized", "this ParanoIM identity was deleted; "
                                   "its account no longer exists"))
