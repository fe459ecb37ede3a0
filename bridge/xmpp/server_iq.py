"""IQs after binding: who answers which query, for which JID.

Every get/set IQ gets exactly one reply (Gajim stalls without disco#info and
the roster; libpurple needs the session IQ, answered in ``stream.py``).
Handlers are a table keyed by (target kind, payload tag, IQ type); anything
not in it is ``service-unavailable`` (RFC 6120 §8.4). Results and errors
addressed to the server (answers to our roster pushes) are dropped.
"""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from slixmpp import JID, Iq

from bridge.api import ServiceAPI
from bridge.xmpp.acts import contact_features
from bridge.xmpp.avatars import Avatars
from bridge.xmpp.bookmarks import Bookmarks
from bridge.xmpp.errors import XmppError
from bridge.xmpp.gateway import Gateway
from bridge.xmpp.jids import Domains, parse_jid
from bridge.xmpp.pep import Pep
from bridge.xmpp.private import PRIVATE_NS, PrivateStorage
from bridge.xmpp.roster import BLOCKING_NS, ROSTER_NS
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
PING = "urn:xmpp:ping"
VCARD = "vcard-temp"
CARBONS = "urn:xmpp:carbons:2"
MUC = "http://jabber.org/protocol/muc"
RECEIPTS = "urn:xmpp:receipts"
CHATSTATES = "http://jabber.org/protocol/chatstates"

Handler = Callable[["Session", ET.Element, ET.Element, JID | None], Iq]

_IDENTITIES: dict[str, list[tuple[str, str, str | None]]] = {
    "server": [("server", "im", "ParanoIM")],
    "account": [("account", "registered", None)],
    "contacts": [("gateway", "paranoim", "ParanoIM P2P network")],
    "contact": [("client", "pc", None)],
    "bot": [("client", "bot", "ParanoIM")],
    "rooms": [("conference", "text", "ParanoIM rooms")],
    "room": [("conference", "text", "Public room")],
}
_FEATURES = {
    "server": [DISCO_INFO, DISCO_ITEMS, PING, CARBONS, BLOCKING_NS, "msgoffline", VCARD,
               PRIVATE_NS],
    "account": [DISCO_INFO, DISCO_ITEMS],
    "contacts": [DISCO_INFO, DISCO_ITEMS, PING, RECEIPTS],
    "contact": [DISCO_INFO, RECEIPTS],
    "bot": [DISCO_INFO],
    "rooms": [DISCO_INFO, DISCO_ITEMS, MUC],
    "room": [DISCO_INFO, MUC, "muc_public", "muc_open", "muc_unmoderated",
             "muc_semianonymous", "muc_persistent", "muc_unsecured"],
}


class ServerIq:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains,
                 gateway: Gateway) -> None:
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self.gateway = gateway
        # What disco shows, per target kind; the component mode adjusts these.
        self.identities = {k: list(v) for k, v in _IDENTITIES.items()}
        self.features = {k: list(v) for k, v in _FEATURES.items()}
        if service.chat_states_enabled():  # clients send chat states to who announces them
            self.features["contact"].append(CHATSTATES)
        self.features["contact"] += contact_features(service.markers_enabled())
        self.items: dict[str, list[tuple[str, str]]] = {
            "server": [(domains.contacts, "P2P contacts"), (domains.rooms, "Rooms")],
            "rooms": [(domains.public_room, "Public room")],
        }
        self.private = PrivateStorage(service)
        self._handlers: dict[tuple[str, str, str], Handler] = {}
        for kind in _IDENTITIES:
            self._handlers[(kind, DISCO_INFO, "get")] = self._disco_info
            self._handlers[(kind, DISCO_ITEMS, "get")] = self._disco_items
        for kind in ("server", "account", "contacts", "bot", "rooms", "room"):
            self._handlers[(kind, PING, "get")] = self._ping
        for kind in ("server", "account", "contact", "bot"):
            self._handlers[(kind, VCARD, "get")] = self._vcard
        for kind in ("server", "account"):
            self._handlers[(kind, ROSTER_NS, "get")] = self._roster_get
            self._handlers[(kind, ROSTER_NS, "set")] = self._roster_set
            self._handlers[(kind, CARBONS, "set")] = self._carbons
            self._handlers[(kind, PRIVATE_NS, "get")] = self._private
            self._handlers[(kind, PRIVATE_NS, "set")] = self._private
            for tag in ("blocklist", "block", "unblock"):
                for itype in ("get", "set"):
                    self._handlers[(kind, f"{BLOCKING_NS}}}{tag}", itype)] = self._blocking
        if gateway.groups.offered:  # private groups, on the embedded listener
            gateway.groups.install(self)

    def install_pep(self) -> None:
        """The identities' PEP services (embedded listener only: behind an XMPP server,
        that server keeps its users' PEP), with bookmarks and avatars on them."""
        pep = Pep(self.service, self.sessions)
        pep.install(self)
        Bookmarks(pep).install(self)
        Avatars(pep).install(self)

    def handler(self, kind: str, ns: str, itype: str) -> Handler | None:
        """Who answers now (to wrap it before ``register`` replaces it)."""
        return self._handlers.get((kind, ns, itype))

    def register(self, kind: str, ns: str, itype: str, handler: Handler) -> None:
        """Answer IQs of ``itype`` with a payload in ``ns`` sent to a ``kind`` target."""
        self._handlers[(kind, ns, itype)] = handler

    def handle(self, conn: Session, el: ET.Element) -> None:
        itype = el.get("type", "")
        to = parse_jid(el.get("to"))
        kind = self._kind(conn, to)
        if kind == "own-resource":
            assert to is not None and conn.owner is not None
            target = self.sessions.resource(conn.owner.address, to.resource)
            if target is None:
                if itype in ("get", "set"):
                    raise XmppError("service-unavailable", "that client is not connected")
                return
            target.send(copy.deepcopy(el))
            return
        if itype in ("result", "error"):
            return
        if itype not in ("get", "set"):
            raise XmppError("bad-request", "IQ type must be get, set, result or error", "modify")
        children = list(el)
        if len(children) != 1:
            raise XmppError("bad-request", "an IQ get or set carries one payload", "modify")
        payload = children[0]
        ns = payload.tag[1:].split("}")[0] if payload.tag.startswith("{") else ""
        handler = self._handlers.get((kind, ns, itype)) or self._handlers.get(
            (kind, payload.tag[1:], itype)
        )
        if handler is None:
            raise XmppError("service-unavailable", "")
        reply = handler(conn, el, payload, to)
        reply["to"] = conn.jid.full
        if to is not None:
            reply["from"] = to.full
        conn.send(reply)

    def _kind(self, conn: Session, to: JID | None) -> str:
        d = self.domains
        if to is None or to.full == d.server:
            return "server"
        if to.bare == conn.bare:
            return "own-resource" if to.resource else "account"
        if to.bare == d.bot:
            return "bot"
        if to.bare == d.public_room:
            return "room"
        if to.full == d.contacts:
            return "contacts"
        if to.domain == d.contacts and to.local:
            return "contact"
        if to.full == d.rooms:
            return "rooms"
        if self.gateway.groups.handles(to):
            return "group" if to.local else "groups"
        return "other"

    # --- handlers ----------------------------------------------------------------------

    def _disco_info(self, conn: Session, el: ET.Element, payload: ET.Element,
                    to: JID | None) -> Iq:
        if payload.get("node"):
            raise XmppError("item-not-found", "no such node")
        kind = self._kind(conn, to)
        reply = new_iq("result", el.get("id", ""))
        for category, itype, name in self.identities[kind]:
            if kind == "contact" and to is not None:
                name = self._petname(conn, to) or None
            reply["disco_info"].add_identity(category, itype, name=name)
        for feature in self.features[kind]:
            reply["disco_info"].add_feature(feature)
        return reply

    def _disco_items(self, conn: Session, el: ET.Element, payload: ET.Element,
                     to: JID | None) -> Iq:
        kind = self._kind(conn, to)
        reply = new_iq("result", el.get("id", ""))
        items = reply["disco_items"]
        listed = [] if payload.get("node") else self.items.get(kind, [])  # no nodes anywhere
        for jid, name in listed:
            items.add_item(jid, name=name)
        if not listed:
            _ = items["items"]  # an empty <query/> in the disco#items namespace
        return reply

    def _ping(self, conn: Session, el: ET.Element, payload: ET.Element,
              to: JID | None) -> Iq:
        return new_iq("result", el.get("id", ""))

    def _vcard(self, conn: Session, el: ET.Element, payload: ET.Element,
               to: JID | None) -> Iq:
        assert conn.owner is not None
        kind = self._kind(conn, to)
        if kind == "contact" and to is not None:
            full_name = self._petname(conn, to)
            if not full_name:
                raise XmppError("item-not-found", "not one of your contacts")
        elif kind == "bot":
            full_name = "ParanoIM gateway"
        else:
            full_name = conn.owner.nick
        reply = new_iq("result", el.get("id", ""))
        vcard = ET.SubElement(reply.xml, f"{{{VCARD}}}vCard")
        ET.SubElement(vcard, f"{{{VCARD}}}FN").text = full_name
        ET.SubElement(vcard, f"{{{VCARD}}}NICKNAME").text = full_name
        return reply

    def _petname(self, conn: Session, to: JID) -> str:
        assert conn.owner is not None
        address = self.domains.address_of(to)
        for contact in self.service.contacts(conn.owner.address):
            if contact.address == address:
                return contact.petname
        return ""

    def _roster_get(self, conn: Session, el: ET.Element, payload: ET.Element,
                    to: JID | None) -> Iq:
        return self.gateway.roster.on_get(conn, el.get("id", ""))

    def _roster_set(self, conn: Session, el: ET.Element, payload: ET.Element,
                    to: JID | None) -> Iq:
        return self.gateway.roster.on_set(conn, payload, el.get("id", ""))

    def _blocking(self, conn: Session, el: ET.Element, payload: ET.Element,
                  to: JID | None) -> Iq:
        return self.gateway.roster.on_blocking(conn, el, payload)

    def _private(self, conn: Session, el: ET.Element, payload: ET.Element,
                 to: JID | None) -> Iq:
        assert conn.owner is not None
        reply = new_iq("result", el.get("id", ""))
        if el.get("type") == "get":
            reply.xml.append(self.private.get(conn.owner.address, payload))
        else:
            self.private.set(conn.owner.address, payload, conn)
        return reply

    def _carbons(self, conn: Session, el: ET.Element, payload: ET.Element,
                 to: JID | None) -> Iq:
        name = payload.tag.split("}")[1]
        if name not in ("enable", "disable"):
            raise XmppError("bad-request", "expected enable or disable", "modify")
        conn.carbons = name == "enable"
        return new_iq("result", el.get("id", ""))
