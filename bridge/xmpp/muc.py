"""The public room as a MUC room (XEP-0045): ``public@rooms.<domain>``.

The room of the Peerster design has no server and no member list: every
identity that joins sees what anyone sends to it. So the MUC here is thin:
joining answers with the self-presence (status 110) and the subject, a
groupchat message is reflected to the sender's joined sessions at once and
sent with ``service.send_room_message`` as a task, and room messages from the
network appear from ``public@rooms.<domain>/<nick [address prefix]>`` (the
address prefix keeps anyone from posing as someone else by picking a nick).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slixmpp import JID, Message, Presence

from bridge.api import ServiceAPI
from bridge.events import RoomMessageArrived
from bridge.xmpp.errors import XmppError, error_reply_to
from bridge.xmpp.jids import Domains
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_message

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

ROOM = "public"
SUBJECT = "ParanoIM public room: everyone on the network can read what you write here"
_C = "{jabber:client}"
MAX_NICK = 64
MUC_USER = "http://jabber.org/protocol/muc#user"

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def occupant_nick(nick: str, address: str) -> str:
    clean = " ".join(nick.split())[:32] or "anonymous"
    return f"{clean} [{address[:6]}]"


class PublicRoom:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains,
                 spawn: Spawn) -> None:
        self.service = service
        self.sessions = sessions
        self.domains = domains
        self.jid = domains.public_room
        self._spawn = spawn

    def _check_room(self, to: JID) -> None:
        if to.bare != self.jid:
            raise XmppError("item-not-found", f"the only room here is {self.jid}")

    # --- from XMPP -------------------------------------------------------------------

    def on_presence(self, conn: Session, el: ET.Element, to: JID) -> None:
        self._check_room(to)
        if el.get("type") == "unavailable":
            self.leave(conn)
            return
        if el.get("type"):
            return  # subscriptions to a room mean nothing
        nick = to.resource.strip()
        if not nick or len(nick) > MAX_NICK:
            raise XmppError("jid-malformed", "choose a nickname to join the room", "modify")
        first_join = self.jid not in conn.rooms
        conn.rooms[self.jid] = nick
        conn.room_seen.setdefault(self.jid, set())
        conn.send(self._self_presence(conn, nick, ""))
        if first_join:
            subject = new_message()
            subject["to"] = conn.jid.full
            subject["from"] = self.jid
            subject["type"] = "groupchat"
            subject["subject"] = SUBJECT
            conn.send(subject)

    def leave(self, conn: Session) -> None:
        nick = conn.rooms.pop(self.jid, None)
        conn.room_seen.pop(self.jid, None)
        if nick is not None:
            conn.send(self._self_presence(conn, nick, "unavailable"))

    def rename(self, conn: Session, old: str, new: str) -> None:
        """The identity was renamed: a session in the room under the old nick takes the
        new one, as a server-side nick change (XEP-0045 §7.6: 303, then 110 and 210)."""
        nick = conn.rooms.get(self.jid)
        new = " ".join(new.split())[:MAX_NICK]
        if nick is None or nick != old or not new or new == nick:
            return
        gone = self._self_presence(conn, nick, "unavailable")
        gone["muc"]["status_codes"] = {110, 303}
        item = gone.xml.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}item")
        if item is not None:  # slixmpp's stanza has no setter for the item's nick
            item.set("nick", new)
        conn.send(gone)
        conn.rooms[self.jid] = new
        back = self._self_presence(conn, new, "")
        back["muc"]["status_codes"] = {110, 210}
        conn.send(back)

    def on_message(self, conn: Session, el: ET.Element, to: JID) -> None:
        assert conn.owner is not None
        self._check_room(to)
        if el.get("type") != "groupchat" or to.resource:
            raise XmppError("feature-not-implemented",
                            "private messages in the public room are not supported")
        if self.jid not in conn.rooms:
            raise XmppError("not-acceptable", "join the room before writing to it")
        if el.find(_C + "subject") is not None:
            raise XmppError("forbidden", "the subject of the public room is fixed", "auth")
        body = el.findtext(_C + "body")
        if body is None:
            return  # chat states stay local
        owner = conn.owner
        attrs = dict(el.attrib)
        for session in self.sessions.of(owner.address):
            nick = session.rooms.get(self.jid)
            if nick is not None:
                session.send(self._groupchat(session, nick, body, attrs.get("id", "")))

        async def send() -> None:
            try:
                await self.service.send_room_message(owner.address, ROOM, body)
            except Exception as exc:
                conn.send(error_reply_to("message", attrs, conn.jid.full, exc, body))

        self._spawn(send())

    # --- to XMPP -----------------------------------------------------------------------

    def send_room_message(self, event: RoomMessageArrived) -> None:
        if event.room != ROOM:
            return
        nick = occupant_nick(event.sender_nick, event.sender)
        for conn in self.sessions.of(event.to):
            if self.jid not in conn.rooms:
                continue
            if event.sender == event.to:
                continue  # our own message: already reflected when it was sent
            seen = conn.room_seen.setdefault(self.jid, set())
            if nick not in seen:
                seen.add(nick)
                occupant = Presence()
                occupant["to"] = conn.jid.full
                occupant["from"] = f"{self.jid}/{nick}"
                occupant["muc"]["affiliation"] = "none"
                occupant["muc"]["role"] = "participant"
                conn.send(occupant)
            conn.send(self._groupchat(conn, nick, event.text, event.envelope_id.hex()[:32]))

    # --- stanzas -----------------------------------------------------------------------

    def _self_presence(self, conn: Session, nick: str, ptype: str) -> Presence:
        presence = Presence()
        presence["to"] = conn.jid.full
        presence["from"] = f"{self.jid}/{nick}"
        if ptype:
            presence["type"] = ptype
        presence["muc"]["affiliation"] = "member"
        presence["muc"]["role"] = "participant" if not ptype else "none"
        presence["muc"]["jid"] = conn.jid.full
        presence["muc"]["status_codes"] = {110}  # "this is you"
        return presence

    def _groupchat(self, conn: Session, nick: str, body: str, ident: str) -> Message:
        msg = new_message()
        msg["to"] = conn.jid.full
        msg["from"] = f"{self.jid}/{nick}"
        msg["type"] = "groupchat"
        msg["body"] = body
        if ident:
            msg["id"] = ident
        return msg
