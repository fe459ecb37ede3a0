"""The server's users as the gateway's sessions (component mode): who is who.

Each user linked to a local identity (``links.py``) has one always-available
``ComponentSession`` for their bare JID, their *home*: what the network sends
goes to the bare JID and their server delivers it to their clients or stores
it offline. Stanzas from a full JID get a session of their own, a *view*, for
IQ replies and room membership; views are bounded (``MAX_VIEWS``), room members
are kept. A user who is not linked may ask for disco, ping and the
registration form (``registration.py``); anything else is
``registration-required``. An identity deleted while linked unlinks its user,
who is told so in a message from the gateway (there is no stream of theirs to
end: it belongs to their server).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from slixmpp import JID
from slixmpp.xmlstream import ElementBase

from bridge.core.errors import UserError
from bridge.events import IdentityInfo
from bridge.xmpp.errors import XmppError
from bridge.xmpp.registration import REGISTER_NS, is_registration
from bridge.xmpp.roster import RESOURCE
from bridge.xmpp.server_iq import DISCO_INFO, DISCO_ITEMS, PING, RECEIPTS, ServerIq
from bridge.xmpp.slixfix import new_message
from bridge.xmpp.streamerror import StreamError

if TYPE_CHECKING:
    from bridge.xmpp.component import Component

log = logging.getLogger(__name__)

MAX_VIEWS = 10_000  # full-JID sessions remembered (room members are never dropped)
UNREGISTERED_IQS = frozenset({DISCO_INFO, DISCO_ITEMS, PING})


@dataclass(eq=False)
class ComponentSession:
    """A user of the server, as the gateway sees a client (``sessions.Session``)."""

    owner: IdentityInfo | None
    jid: JID
    component: Component
    available: bool = False
    carbons: bool = False
    roster_requested: bool = False
    rooms: dict[str, str] = field(default_factory=dict)
    room_seen: dict[str, set[str]] = field(default_factory=dict)

    @property
    def bare(self) -> str:
        return self.jid.bare

    def send(self, stanza: ElementBase | ET.Element) -> None:
        self.component.send(stanza)

    def write(self, data: bytes, confirm: Callable[[bool], None] | None = None) -> None:
        self.component.write(data)
        if confirm is not None:  # handed to the user's server, which delivers or stores it
            confirm(True)

    def close(self, err: StreamError | None = None) -> None:
        """Nothing to close: the user's connection belongs to their server."""



class ComponentIq(ServerIq):
    """Server IQs minus what belongs to the user's own server (roster, carbons, blocking)."""

    def __init__(self, component: Component) -> None:
        super().__init__(component.service, component.sessions, component.domains,
                         component.gateway)
        for key in list(self._handlers):
            kind, ns, _ = key
            if kind in ("server", "account") and ns not in (*UNREGISTERED_IQS, "vcard-temp"):
                del self._handlers[key]
        d = self.domains
        self.identities["server"] = [("gateway", "paranoim", "ParanoIM P2P network"),
                                     ("conference", "text", "ParanoIM rooms")]
        self.features["server"] = [DISCO_INFO, DISCO_ITEMS, PING, REGISTER_NS, RECEIPTS,
                                   "http://jabber.org/protocol/muc"]
        self.items["server"] = [(d.public_room, "Public room"), (d.bot, "ParanoIM bot")]
        del self._handlers[("server", "vcard-temp", "get")]  # the server kind has no owner


class Users:
    def __init__(self, component: Component) -> None:
        self.component = component
        self.sessions = component.sessions
        self.gateway = component.gateway
        self.links = component.links
        self.service = component.service
        self.domain = component.domain
        self._homes: dict[str, ComponentSession] = {}  # user bare JID -> its session
        self._views: OrderedDict[str, ComponentSession] = OrderedDict()  # full JID -> session

    def attach_linked(self) -> None:
        """A home for every linked user whose identity still exists (at start)."""
        for jid, address in self.links.all():
            identity = self.identity(address)
            if identity is not None:
                self.attach_home(jid, identity)

    def handle(self, kind: str, frm: JID, to: JID, el: ET.Element) -> None:
        conn = self._session_for(frm)
        if kind == "iq":
            self._on_iq(conn, el, to)
        elif kind == "message":
            self._on_message(conn, el)
        else:
            self._on_presence(conn, el, to)

    def identity(self, address: str) -> IdentityInfo | None:
        try:
            return self.service.identity(address)
        except UserError:
            return None  # deleted in the web UI since it was linked

    def _session_for(self, frm: JID) -> ComponentSession:
        home = self._homes.get(frm.bare)  # there is one exactly while the user is linked
        owner = home.owner if home is not None else None
        if not frm.resource:
            return home if home is not None else ComponentSession(None, frm, self.component)
        view = self._views.get(frm.full)
        if view is not None and view.owner == owner:
            self._views.move_to_end(frm.full)
            return view
        if view is not None:
            self._forget(view)
        view = ComponentSession(owner, frm, self.component)
        self._views[frm.full] = view
        if owner is not None:
            self.sessions.add(view)
        if len(self._views) > MAX_VIEWS:
            for stale in [v for v in self._views.values() if not v.rooms][:len(self._views) // 10]:
                self._forget(stale)
        return view

    def _forget(self, view: ComponentSession) -> None:
        if self._views.get(view.jid.full) is view:
            del self._views[view.jid.full]
        self.sessions.remove(view)

    def attach_home(self, jid: str, identity: IdentityInfo) -> ComponentSession:
        old = self._homes.pop(jid, None)
        if old is not None:
            self.sessions.remove(old)
        home = ComponentSession(identity, JID(jid), self.component, available=True)
        self._homes[jid] = home
        self.sessions.add(home)
        return home

    def detach(self, jid: str) -> list[str]:
        """Forget a user's sessions; returns the contact JIDs put into their roster."""
        home = self._homes.pop(jid, None)
        if home is not None:
            self.sessions.remove(home)
        for view in [v for v in self._views.values() if v.jid.bare == jid]:
            self.gateway.room.leave(view)
            self._forget(view)
        return self.component.privilege.forget(jid)

    def identity_deleted(self, owner: str) -> None:
        """The identity a user was linked to is gone: unlink them and say so."""
        jid = self.links.jid_for(owner)
        if jid is None:
            return
        self.links.unlink(jid)
        c = self.component
        for contact in [*self.detach(jid), c.domains.bot]:
            c.presence(jid, "unavailable", frm=f"{contact}/{RESOURCE}")
        c.presence(jid, "unavailable")
        notice = new_message()
        notice["from"] = self.domain
        notice["to"] = jid
        notice["type"] = "chat"
        notice["body"] = ("Your ParanoIM identity was deleted, so this account is no longer "
                          f"registered with {self.domain}. Register again to get a new one.")
        c.send(notice)
        log.info("%s unlinked: its identity was deleted", jid)

    # --- from the server's users ---------------------------------------------------------

    def _on_message(self, conn: ComponentSession, el: ET.Element) -> None:
        if conn.owner is None:
            if el.get("type") == "error":
                return
            raise self._not_registered()
        self.gateway.on_message(conn, el)

    def _on_presence(self, conn: ComponentSession, el: ET.Element, to: JID) -> None:
        ptype = el.get("type", "")
        if ptype == "unavailable" and conn.jid.resource:
            self.gateway.room.leave(conn)
            self._forget(conn)
            return
        if conn.owner is None:
            return  # nothing to say to someone who has not registered
        if to.full == self.domain:
            self._presence_to_gateway(conn, ptype)
            return
        self.gateway.on_presence(conn, el)

    def _presence_to_gateway(self, conn: ComponentSession, ptype: str) -> None:
        if ptype == "subscribe":
            self.component.presence(conn.bare, "subscribed")
            self.component.presence(conn.bare, "")
        elif ptype == "probe":
            self.component.presence(conn.jid.full, "")
        elif ptype == "" and conn.jid.resource:
            self.component.presence(conn.jid.full, "")
            self.gateway.roster.initial_presence(conn)

    def _on_iq(self, conn: ComponentSession, el: ET.Element, to: JID) -> None:
        children = list(el)
        payload = children[0] if len(children) == 1 else None
        if is_registration(payload) and to.full == self.domain:
            assert payload is not None
            c = self.component
            c.tasks.spawn(c.registration.on_iq(conn, el, payload), name="registration")
            return
        if conn.owner is None and el.get("type") in ("get", "set"):
            ns = payload.tag[1:].split("}")[0] if payload is not None else ""
            if to.full != self.domain or ns not in UNREGISTERED_IQS:
                raise self._not_registered()
        self.component.iq.handle(conn, el)

    def _not_registered(self) -> XmppError:
        return XmppError("registration-required",
                         f"register with the gateway {self.domain} first (your client's "
                         "service discovery: Register)", "auth")
