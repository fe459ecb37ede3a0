"""In-band registration with the component (XEP-0077): who on the server is which identity.

A user of the server registers with ``p2p.example.org`` from their client's
service discovery. The form asks for a nickname (a new identity) or the username
and XMPP password of an identity the daemon already has (shown in the web UI).
Registering links the user's bare JID to the identity (``links.py``), and the
gateway, the bot and the identity's contacts are put into the user's roster
(``privilege.py``). A ``<remove/>`` unlinks the user; the identity stays.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID
from slixmpp.xmlstream import ElementBase

from bridge.events import IdentityInfo
from bridge.xmpp.errors import XmppError, error_reply, stanza_error_for
from bridge.xmpp.links import LinkConflictError
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.component import Component, ComponentSession

log = logging.getLogger(__name__)

REGISTER_NS = "jabber:iq:register"
_REG = f"{{{REGISTER_NS}}}"


def is_registration(payload: ET.Element | None) -> bool:
    return payload is not None and payload.tag == _REG + "query"


class Registration:
    def __init__(self, component: Component) -> None:
        self.component = component

    async def on_iq(self, conn: ComponentSession, iq: ET.Element, query: ET.Element) -> None:
        c = self.component
        user = conn.jid
        try:
            if iq.get("type") == "get":
                reply = self._form(user.bare)
                linked = None
            elif iq.get("type") == "set":
                linked = await self._set(user.bare, query)
                reply = new_iq("result", iq.get("id", ""))
            else:
                return
        except Exception as exc:
            c.send(error_reply("iq", user.full, c.domain, iq.get("id", ""),
                               stanza_error_for(exc)))
            return
        reply["id"] = iq.get("id", "")
        reply["to"] = user.full
        reply["from"] = c.domain
        c.send(reply)
        if linked is not None:
            c.privilege.introduce(user.bare, linked)

    def _form(self, bare: str) -> ElementBase:
        c = self.component
        reply = new_iq("result", "")
        query = ET.SubElement(reply.xml, _REG + "query")
        address = c.links.address_for(bare)
        identity = c.users.identity(address) if address else None
        if identity is not None:
            ET.SubElement(query, _REG + "registered")
            ET.SubElement(query, _REG + "nick").text = identity.nick
            ET.SubElement(query, _REG + "username").text = identity.username
            return reply
        ET.SubElement(query, _REG + "instructions").text = (
            "Give a nickname to get a new ParanoIM identity (only your contacts see it). "
            "To use an identity you already have, give its username and XMPP password "
            "from the ParanoIM web page instead.")
        for name in ("nick", "username", "password"):
            ET.SubElement(query, _REG + name)
        return reply

    async def _set(self, bare: str, query: ET.Element) -> IdentityInfo | None:
        c = self.component
        if query.find(_REG + "remove") is not None:
            address = c.links.unlink(bare)
            if address is None:
                raise XmppError("registration-required", "you are not registered here", "auth")
            c.users.detach(bare)
            c.presence(bare, "unsubscribed")
            c.presence(bare, "unavailable")
            log.info("%s unregistered from the gateway", bare)
            return None
        username = (query.findtext(_REG + "username") or "").strip()
        password = query.findtext(_REG + "password") or ""
        nick = " ".join((query.findtext(_REG + "nick") or "").split())
        current = c.links.address_for(bare)
        identity: IdentityInfo | None
        if username:
            identity = c.service.check_login(username, password)
            if identity is None:
                raise XmppError("not-authorized", "wrong username or XMPP password of the "
                                "ParanoIM identity (see the web page)", "auth")
        elif current is not None and (identity := c.users.identity(current)) is not None:
            if nick and nick != identity.nick:
                identity = c.service.rename_identity(identity.address, nick)
        else:
            identity = await c.service.create_identity(nick or JID(bare).local or "me")
        try:
            c.links.link(bare, identity.address)
        except LinkConflictError as exc:
            raise XmppError("conflict", str(exc)) from None
        c.users.attach_home(bare, identity)
        log.info("%s linked to identity %s", bare, identity.fingerprint)
        return identity
