"""Contacts <-> roster, subscriptions and blocking (RFC 6121, XEP-0191).

Mapping:
- ACCEPTED contact   -> roster item ``<address>@p2p.<domain>``, name = petname,
                        subscription "both", shown available.
- PENDING_IN contact -> item with subscription "none" and a
                        ``<presence type="subscribe">`` from it (re-sent at login
                        until the person answers).
- BLOCKED contact    -> item with subscription "none", listed in the blocklist.
- The gateway bot is always in the roster (group "ParanoIM").

From the client: roster set adds (``add_contact``) or accepts, roster remove
removes, ``subscribed`` accepts, ``unsubscribed`` refuses a pending request,
XEP-0191 block/unblock blocks or accepts again. Errors propagate to the caller,
which maps them in ``errors.py``.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from slixmpp import Iq, Presence

from bridge.api import ServiceAPI
from bridge.core.address import decode_address
from bridge.core.errors import BadInviteError
from bridge.events import ContactInfo, ContactState
from bridge.xmpp.errors import XmppError
from bridge.xmpp.jids import Domains, InvalidJID, parse_jid
from bridge.xmpp.presences import shown
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

ROSTER_NS = "jabber:iq:roster"
BLOCKING_NS = "urn:xmpp:blocking"
NICK_NS = "http://jabber.org/protocol/nick"
_SUBSCRIPTION = {
    ContactState.ACCEPTED: "both",
    ContactState.PENDING_IN: "none",
    ContactState.BLOCKED: "none",
}


RESOURCE = "paranoim"  # the resource contacts and the bot show presence from


class RosterMap:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains) -> None:
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self._push_ids = itertools.count(1)
        # (client, from, presence): dresses an available presence from a contact
        self.photo: Callable[[Session, str, Presence], None] = lambda conn, frm, p: None

    # --- lookups -------------------------------------------------------------------

    def _contact(self, owner: str, address: str) -> ContactInfo | None:
        for contact in self.service.contacts(owner):
            if contact.address == address:
                return contact
        return None

    def _item(self, contact: ContactInfo) -> dict[str, object]:
        return {
            "name": contact.petname,
            "subscription": _SUBSCRIPTION[contact.state],
            "groups": [],
        }

    def _address(self, jid_text: str | None) -> str:
        try:
            jid = parse_jid(jid_text)
        except InvalidJID as exc:
            raise XmppError("jid-malformed", "that is not a valid JID", "modify") from exc
        address = self.domains.address_of(jid) if jid else None
        if address is None:
            raise XmppError(
                "not-acceptable",
                f"only P2P contacts (<address>@{self.domains.contacts}) can be added here",
                "modify",
            )
        return address

    def _add(self, owner: str, address: str, name: str = "") -> ContactInfo:
        try:
            return self.service.add_contact(owner, address, name)
        except BadInviteError:
            # add_contact takes a link or an address, and its text says it is neither;
            # from a JID only the address can be wrong, so say what is wrong with it.
            decode_address(address)  # raises BadAddressError (jid-malformed)
            raise

    # --- roster IQs ------------------------------------------------------------------

    def on_get(self, conn: Session, iq_id: str) -> Iq:
        assert conn.owner is not None
        conn.roster_requested = True
        reply = new_iq("result", iq_id)
        items: dict[str, dict[str, object]] = {
            self.domains.bot: {"name": "ParanoIM", "subscription": "both", "groups": ["ParanoIM"]}
        }
        for contact in self.service.contacts(conn.owner.address):
            items[self.domains.contact(contact.address)] = self._item(contact)
        reply["roster"]["items"] = items
        return reply

    def on_set(self, conn: Session, query: ET.Element, iq_id: str) -> Iq:
        assert conn.owner is not None
        owner = conn.owner.address
        items = query.findall(f"{{{ROSTER_NS}}}item")
        if len(items) != 1:
            raise XmppError("bad-request", "a roster set carries exactly one item", "modify")
        item = items[0]
        if item.get("jid", "").lower() == self.domains.bot:
            return new_iq("result", iq_id)  # the bot stays; nothing to change
        address = self._address(item.get("jid"))
        existing = self._contact(owner, address)
        if item.get("subscription") == "remove":
            if existing is not None:
                self.service.remove_contact(owner, address)
            self.push(owner, removed=address)
        elif existing is None:
            self.push(owner, self._add(owner, address, item.get("name", "")))
        elif existing.state is ContactState.PENDING_IN:
            self.push(owner, self.service.accept_contact(owner, address))
        else:
            # No rename in ServiceAPI yet: push the current item so the client's
            # view matches what the daemon holds.
            self.push(owner, existing)
        return new_iq("result", iq_id)

    def push(self, owner: str, contact: ContactInfo | None = None,
             removed: str | None = None) -> None:
        """Roster push (RFC 6121 §2.1.6) to every session that fetched the roster."""
        if contact is not None:
            jid, item = self.domains.contact(contact.address), self._item(contact)
        elif removed is not None:
            jid, item = self.domains.contact(removed), {"subscription": "remove"}
        else:
            return
        for conn in self.sessions.of(owner):
            if not conn.roster_requested:
                continue
            iq = new_iq("set", f"push-{next(self._push_ids)}")
            iq["to"] = conn.jid.full
            iq["roster"]["items"] = {jid: item}
            conn.send(iq)

    # --- presence ----------------------------------------------------------------------

    def contact_presence(self, conn: Session, contact: ContactInfo) -> None:
        """What the client should see about one contact right now."""
        frm = self.domains.contact(contact.address)
        if contact.state is ContactState.ACCEPTED:
            assert conn.owner is not None
            known = self.service.contact_presence(conn.owner.address, contact.address)
            available = self.presence(conn, frm, "")
            conn.send(available if known is None else shown(available, known))
        elif contact.state is ContactState.PENDING_IN:
            request = self.presence(conn, frm, "subscribe")
            if contact.petname:
                nick = ET.SubElement(request.xml, f"{{{NICK_NS}}}nick")
                nick.text = contact.petname
            conn.send(request)
        else:
            conn.send(self.presence(conn, frm, "unavailable"))

    def initial_presence(self, conn: Session) -> None:
        assert conn.owner is not None
        conn.send(self.presence(conn, self.domains.bot, ""))
        for contact in self.service.contacts(conn.owner.address):
            self.contact_presence(conn, contact)

    def presence(self, conn: Session, frm: str, ptype: str) -> Presence:
        presence = Presence()
        presence["to"] = conn.jid.full
        # Availability comes from a resource, as from any real contact (Gajim counts a
        # contact online only then); subscription presences stay on the bare JID.
        presence["from"] = f"{frm}/{RESOURCE}" if ptype in ("", "unavailable") else frm
        if ptype:
            presence["type"] = ptype
        else:
            self.photo(conn, frm, presence)  # a contact's picture's hash (avatars.py)
        return presence

    def on_subscription(self, conn: Session, ptype: str, to_bare: str) -> None:
        assert conn.owner is not None
        owner = conn.owner.address
        if to_bare == self.domains.bot:
            if ptype == "subscribe":
                conn.send(self.presence(conn, self.domains.bot, "subscribed"))
                conn.send(self.presence(conn, self.domains.bot, ""))
            return
        address = self._address(to_bare)
        contact = self._contact(owner, address)
        state = contact.state if contact else None
        if ptype == "subscribe":
            if contact is None:
                contact = self._add(owner, address)
                self.push(owner, contact)
            elif state is ContactState.PENDING_IN:
                contact = self.service.accept_contact(owner, address)
                self.push(owner, contact)
            if contact.state is ContactState.ACCEPTED:
                conn.send(self.presence(conn, to_bare, "subscribed"))
                conn.send(self.presence(conn, to_bare, ""))
        elif ptype == "subscribed" and state is ContactState.PENDING_IN:
            self.push(owner, self.service.accept_contact(owner, address))
        elif ptype == "unsubscribed" and state is ContactState.PENDING_IN:
            self.service.remove_contact(owner, address)
            self.push(owner, removed=address)
        # "unsubscribe" changes nothing: P2P contacts have no one-way subscriptions

    # --- blocking (XEP-0191) --------------------------------------------------------------

    def on_blocking(self, conn: Session, iq: ET.Element, payload: ET.Element) -> Iq:
        assert conn.owner is not None
        owner = conn.owner.address
        name = payload.tag.split("}")[1]
        iq_id = iq.get("id", "")
        if iq.get("type") == "get" and name == "blocklist":
            reply = new_iq("result", iq_id)
            blocklist = ET.SubElement(reply.xml, f"{{{BLOCKING_NS}}}blocklist")
            for contact in self.service.contacts(owner):
                if contact.state is ContactState.BLOCKED:
                    ET.SubElement(blocklist, f"{{{BLOCKING_NS}}}item",
                                  {"jid": self.domains.contact(contact.address)})
            return reply
        if iq.get("type") != "set" or name not in ("block", "unblock"):
            raise XmppError("bad-request", "expected blocklist, block or unblock", "modify")
        addresses = [self._address(i.get("jid")) for i in payload.findall(f"{{{BLOCKING_NS}}}item")]
        if name == "block":
            if not addresses:
                raise XmppError("bad-request", "block needs at least one item", "modify")
            for address in addresses:
                self.push(owner, self.service.block_contact(owner, address))
        else:
            if not addresses:  # unblock everyone
                addresses = [c.address for c in self.service.contacts(owner)
                             if c.state is ContactState.BLOCKED]
            for address in addresses:
                self.push(owner, self.service.accept_contact(owner, address))
        # XEP-0191 §3.3: tell every session of the account what changed
        for other in self.sessions.of(owner):
            push = new_iq("set", f"block-{next(self._push_ids)}")
            push["to"] = other.jid.full
            element = ET.SubElement(push.xml, f"{{{BLOCKING_NS}}}{name}")
            for address in addresses:
                ET.SubElement(element, f"{{{BLOCKING_NS}}}item",
                              {"jid": self.domains.contact(address)})
            other.send(push)
        return new_iq("result", iq_id)
