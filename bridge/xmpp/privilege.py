"""XEP-0356 privileged entity: writing P2P contacts into a server user's roster.

In component mode the user's roster belongs to their own server. A server that
grants the component roster access (Prosody + mod_privilege: ``roster = "both"``;
ejabberd: ``mod_privilege`` with an access rule) lets it add, rename and remove
the user's contacts by privileged roster sets. Without it, a contact reaches the
roster as a subscription request from its JID, carrying its petname as an
XEP-0172 nick, and the user's client asks the person.

Two generations of the XEP are in use, and the component speaks both:

- ``urn:xmpp:privilege:2`` (XEP-0356 0.4, Prosody's mod_privilege): the server
  also pushes roster changes to an entity with "get"/"both" access (answered
  with a result, as any roster push), and IQs on behalf of a user are wrapped
  in ``<privileged_iq/>``. The gateway sends no such IQ.
- ``urn:xmpp:privilege:1`` (XEP-0356 0.2/0.3, ejabberd's xmpp library): no
  pushes to the entity, no IQ permission.

Both advertise the grant in a ``<message><privilege><perm access type/></privilege>``
from the server's domain right after the handshake, and in both a roster set is a
plain ``jabber:iq:roster`` IQ from the component's domain to the user's bare JID.
A server that refuses a set (ejabberd 23.01's mod_roster fails on them with
internal-server-error) loses the roster access for this connection, and the
contact is asked for by presence instead.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID

from bridge.events import ContactInfo, ContactState, IdentityInfo
from bridge.xmpp.roster import NICK_NS, ROSTER_NS, RosterMap
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.component import Component

log = logging.getLogger(__name__)

PRIVILEGE_NS = "urn:xmpp:privilege:2"
PRIVILEGE_NS_1 = "urn:xmpp:privilege:1"
NAMESPACES = (PRIVILEGE_NS, PRIVILEGE_NS_1)
_C = "{jabber:client}"


def advertisement(el: ET.Element) -> tuple[str, dict[str, str]] | None:
    """(namespace, {access: type}) of a privilege advertisement, in either namespace."""
    for ns in NAMESPACES:
        privilege = el.find(f"{{{ns}}}privilege")
        if privilege is not None:
            return ns, {p.get("access", ""): p.get("type", "")
                        for p in privilege.iter(f"{{{ns}}}perm")}
    return None


class ComponentRoster(RosterMap):
    """Roster pushes become privileged roster sets or subscription requests."""

    def __init__(self, component: Component) -> None:
        super().__init__(component.service, component.sessions, component.domains)
        self.component = component

    def push(self, owner: str, contact: ContactInfo | None = None,
             removed: str | None = None) -> None:
        self.component.privilege.push_contact(owner, contact, removed)


class Privilege:
    def __init__(self, component: Component) -> None:
        self.component = component
        self.granted: dict[str, dict[str, str]] = {}  # server domain -> access -> type
        self.namespaces: dict[str, str] = {}  # server domain -> the XEP-0356 namespace it used
        self._pushed: dict[tuple[str, str], tuple[str, str]] = {}

    # --- what the server says -------------------------------------------------------------

    def on_advertisement(self, server: str, namespace: str, perms: dict[str, str]) -> None:
        self.granted[server] = perms
        self.namespaces[server] = namespace
        log.info("privileges granted by %s (%s): %s", server, namespace, perms)
        if self.may_set_roster(f"x@{server}"):
            c = self.component
            for jid, address in c.links.all():
                if JID(jid).domain == server and c.users.identity(address) is not None:
                    for contact in c.service.contacts(address):
                        self.push_contact(address, contact, None)

    def is_roster_push(self, frm: JID, el: ET.Element) -> bool:
        """A privilege:2 server's roster push about a user's roster (RFC 6121 §2.1.6)."""
        return (el.get("type") == "set" and not frm.resource
                and self.namespaces.get(frm.domain) == PRIVILEGE_NS
                and el.find(f"{{{ROSTER_NS}}}query") is not None)

    def may_set_roster(self, jid: str) -> bool:
        return self.granted.get(JID(jid).domain, {}).get("roster") in ("set", "both")

    def forget(self, jid: str) -> list[str]:
        """The user unregistered (or their identity is gone): push everything anew next
        time. Returns the contact JIDs that were in their roster."""
        keys = [k for k in self._pushed if k[0] == jid]
        for key in keys:
            del self._pushed[key]
        return [target for _, target in keys]

    # --- into the user's roster -------------------------------------------------------------

    def introduce(self, bare: str, identity: IdentityInfo) -> None:
        """Put the gateway, the bot and the identity's contacts into the user's roster."""
        c = self.component
        if self.may_set_roster(bare):
            self._roster_set(bare, c.domain, "ParanoIM", "both")
            self._roster_set(bare, c.domains.bot, "ParanoIM bot", "both")
            c.presence(bare, "")
        else:
            c.presence(bare, "subscribe")
        for contact in c.service.contacts(identity.address):
            self.push_contact(identity.address, contact, None)

    def push_contact(self, owner: str, contact: ContactInfo | None, removed: str | None) -> None:
        c = self.component
        jid = c.links.jid_for(owner)
        if jid is None:
            return
        if contact is not None:
            target = c.domains.contact(contact.address)
            state = ("both" if contact.state is ContactState.ACCEPTED else "none",
                     contact.petname)
        elif removed is not None:
            target, state = c.domains.contact(removed), ("remove", "")
        else:
            return
        if self._pushed.get((jid, target)) == state:
            return
        self._pushed[(jid, target)] = state
        subscription, name = state
        if self.may_set_roster(jid):
            self._roster_set(jid, target, name, subscription)
        elif subscription == "both":
            self._ask(jid, target, name)
        elif subscription == "remove":
            c.presence(jid, "unsubscribed", frm=target)
            c.presence(jid, "unavailable", frm=target)

    def _ask(self, jid: str, target: str, name: str) -> None:
        """A subscription request from the contact, its petname as a nick (XEP-0172)."""
        presence = ET.Element(_C + "presence", {"from": target, "to": jid, "type": "subscribe"})
        if name:
            ET.SubElement(presence, f"{{{NICK_NS}}}nick").text = name
        self.component.send(presence)

    def _roster_set(self, jid: str, item_jid: str, name: str, subscription: str) -> None:
        c = self.component
        iq = new_iq("set", "")
        iq["from"] = c.domain
        iq["to"] = jid
        query = ET.SubElement(iq.xml, f"{{{ROSTER_NS}}}query")
        item = ET.SubElement(query, f"{{{ROSTER_NS}}}item",
                             {"jid": item_jid, "subscription": subscription})
        if name and subscription != "remove":
            item.set("name", name)
        future = c.request(iq.xml, "roster")
        future.add_done_callback(
            lambda f: self._answer(f, jid, item_jid, name, subscription))

    def _answer(self, future: asyncio.Future[ET.Element], jid: str, item_jid: str,
                name: str, subscription: str) -> None:
        if future.cancelled() or future.result().get("type") != "error":
            return
        error = future.result().find(_C + "error")
        why = next((child.tag.split("}")[-1] for child in error), "") if error is not None else ""
        server = JID(jid).domain
        if self.granted.get(server, {}).pop("roster", None) is not None:
            log.warning("%s refused a privileged roster set (%s); contacts are asked for by "
                        "presence instead", server, why or "no reason given")
        if subscription == "both":
            self._ask(jid, item_jid, name)
