"""Private groups as members-only MUC rooms (XEP-0045) on ``groups.<domain>``,
embedded listener only (docs/groups.md).

A room's JID is per identity: the creator's is the name it was created under
(``friends@groups.localhost``), an invitee's the name and the group id's first 8 hex
digits (``friends-1a2b3c4d@groups.localhost``), so two groups of one name never meet.
Joining a room that is not there creates a group of that name. Every member is
shown as an occupant (``nick [address prefix]``, the contact's petname where there
is one): the network has no presence for rooms. Invitations: XEP-0045 mediated
(``<invite to>`` to the room) or XEP-0249 direct (``jabber:x:conference`` to a
contact); an invitation that arrives is given to the clients as XEP-0249, from the
inviter's contact JID. Removal: an ``muc#admin`` item with role ``none`` or
affiliation ``none``/``outcast``. Group messages reach the sessions joined to the
room; while none is, they wait in RAM (``GroupHold``) for the first client that joins.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from slixmpp import JID, Message, Presence

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.events import GroupChanged, GroupInfo, GroupMessageArrived
from bridge.xmpp.errors import XmppError, error_reply_to
from bridge.xmpp.grouphold import GroupHold
from bridge.xmpp.groupiq import GroupIqs
from bridge.xmpp.jids import Domains, parse_jid
from bridge.xmpp.mam import DELAY_NS as DELAY
from bridge.xmpp.mam import stamp
from bridge.xmpp.muc import MAX_NICK, MUC_USER, occupant_nick
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_message

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

CONFERENCE = "jabber:x:conference"  # XEP-0249
_C = "{jabber:client}"
_SAFE = re.compile(r"[^a-z0-9._-]+")
MAX_UNSEEN = 64  # invitations kept per identity for its next login (one per group)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


def room_name(info: GroupInfo, me: str) -> str:
    """The room's localpart for identity ``me``."""
    base = _SAFE.sub("-", info.name.lower()).strip("-")[:40] or "group"
    return base if info.creator == me else f"{base}-{info.group[:8]}"


class GroupRooms:
    def __init__(self, service: ServiceAPI, sessions: Sessions, domains: Domains,
                 spawn: Spawn) -> None:
        self.service, self.sessions, self.spawn = service, sessions, spawn
        self.domain = f"groups.{domains.server}"
        self.domains = domains
        self.offered = not domains.component
        self.held = GroupHold()
        # invitations that came while no client was online: given at the next login
        self._unseen: dict[str, dict[str, str]] = {}  # owner -> group -> inviter

    def install(self, iq: ServerIq) -> None:
        """Disco, member list, removal and configuration IQs (``bridge.xmpp.groupiq``)."""
        GroupIqs(self).install(iq)

    def handles(self, to: JID) -> bool:
        return self.offered and to.domain == self.domain

    def find(self, owner: str, local: str) -> GroupInfo | None:
        for g in self.service.groups(owner):
            if room_name(g, owner) == local:
                return g
        return None

    def jid(self, info: GroupInfo, owner: str) -> str:
        return f"{room_name(info, owner)}@{self.domain}"

    def nick(self, owner: str, member: str) -> str:
        petname = next((c.petname for c in self.service.contacts(owner)
                        if c.address == member), "")
        return occupant_nick(petname or "member", member)

    # --- from XMPP -------------------------------------------------------------------

    def on_presence(self, conn: Session, el: ET.Element, to: JID) -> None:
        assert conn.owner is not None
        owner = conn.owner.address
        if el.get("type") == "unavailable":
            nick = conn.rooms.pop(to.bare, None)
            conn.room_seen.pop(to.bare, None)
            if nick is not None:
                conn.send(self._self_presence(conn, to.bare, nick, "unavailable", "member"))
            return
        if el.get("type") or not to.local:
            return
        nick = to.resource.strip()
        if not nick or len(nick) > MAX_NICK:
            raise XmppError("jid-malformed", "choose a nickname to join the room", "modify")
        info = self.find(owner, to.local)
        created = info is None
        if info is None:
            info = self._create(owner, to.local)
        if not info.member:
            raise XmppError("registration-required", "you are not a member of this group",
                            "auth")
        room = self.jid(info, owner)
        if room != to.bare:  # the name as the group keeps it (a client's case, spaces)
            raise XmppError("item-not-found", f"this group's room is {room}")
        first = room not in conn.rooms
        conn.rooms[room] = nick
        if first:
            conn.room_seen[room] = set()
            self._occupants(conn, room, info)
        mine = "owner" if info.creator == owner else "member"
        presence = self._self_presence(conn, room, nick, "", mine)
        if created:
            presence["muc"]["status_codes"] = {110, 201}
        conn.send(presence)
        if first:
            for event in self.held.take(owner, info.group):  # history, then the subject
                conn.send(self._said(conn, room, event, delayed=True))
            subject = self._message(conn, room, "")
            subject["subject"] = info.name
            conn.send(subject)

    def _create(self, owner: str, local: str) -> GroupInfo:
        if len(local) > 40 or _SAFE.sub("-", local) != local:
            raise XmppError("not-acceptable", "a new group's room name is at most 40 of "
                            "a-z 0-9 . _ -", "modify")
        try:
            return self.service.create_group(owner, local)
        except UserError as exc:
            raise XmppError("not-allowed", str(exc)) from None

    def on_message(self, conn: Session, el: ET.Element, to: JID) -> None:
        assert conn.owner is not None
        owner = conn.owner.address
        info = self.find(owner, to.local) if to.local else None
        if info is None or not info.member:
            raise XmppError("item-not-found", "there is no such group")
        invite = el.find(f"{{{MUC_USER}}}x/{{{MUC_USER}}}invite")
        if invite is not None:
            self._invite(conn, info, parse_jid(invite.get("to")))
            return
        if el.get("type") != "groupchat" or to.resource:
            raise XmppError("feature-not-implemented",
                            "private messages in a group are not supported")
        room = to.bare
        if room not in conn.rooms:
            raise XmppError("not-acceptable", "join the room before writing to it")
        if el.find(_C + "subject") is not None:
            raise XmppError("forbidden", "a group's subject is its name", "auth")
        body = el.findtext(_C + "body")
        if not body:
            return  # chat states stay local
        ident = el.get("id", "")
        for session in self.sessions.of(owner):
            nick = session.rooms.get(room)
            if nick is not None:
                msg = self._message(session, room, nick)
                msg["body"] = body
                if ident:
                    msg["id"] = ident
                session.send(msg)
        attrs = dict(el.attrib)

        async def send() -> None:
            try:
                await self.service.send_group_message(owner, info.group, body, ident)
            except Exception as exc:
                conn.send(error_reply_to("message", attrs, conn.jid.full, exc, body))

        self.spawn(send())

    def direct_invite(self, conn: Session, el: ET.Element, address: str) -> bool:
        """An XEP-0249 invitation to a contact: True when it was one (and is done)."""
        x = el.find(f"{{{CONFERENCE}}}x")
        room = parse_jid(x.get("jid")) if x is not None else None
        if room is None or not self.handles(room):
            return False
        assert conn.owner is not None
        info = self.find(conn.owner.address, room.local)
        if info is None or not info.member:
            raise XmppError("item-not-found", "there is no such group")
        self._invite(conn, info, JID(self.domains.contact(address)))
        return True

    def _invite(self, conn: Session, info: GroupInfo, who: JID | None) -> None:
        assert conn.owner is not None
        address = self.domains.address_of(who) if who is not None else None
        if address is None:
            raise XmppError("jid-malformed", "invite a contact (ADDRESS@"
                            f"{self.domains.contacts})", "modify")
        try:
            self.service.invite_to_group(conn.owner.address, info.group, address)
        except UserError as exc:
            raise XmppError("not-allowed", str(exc)) from None

    # --- to XMPP -----------------------------------------------------------------------

    def on_changed(self, event: GroupChanged) -> None:
        owner, info = event.owner, event.info
        room = self.jid(info, owner)
        if not info.member:
            self._unseen.get(owner, {}).pop(info.group, None)
        elif event.invited_by and not any(c.available for c in self.sessions.of(owner)):
            unseen = self._unseen.setdefault(owner, {})
            if len(unseen) < MAX_UNSEEN:
                unseen[info.group] = event.invited_by
        for conn in self.sessions.of(owner):
            if event.invited_by and conn.available:
                conn.send(self._invitation(conn, info, event.invited_by))
            if room not in conn.rooms:
                continue
            if not info.member:  # removed: the room closes for this identity
                self.held.forget(owner, info.group)
                gone = self._self_presence(conn, room, conn.rooms.pop(room), "unavailable",
                                           "none")
                gone["muc"]["status_codes"] = {110, 321}
                conn.room_seen.pop(room, None)
                conn.send(gone)
                continue
            self._occupants(conn, room, info)

    def forget(self, owner: str) -> None:
        self.held.forget(owner)
        self._unseen.pop(owner, None)

    def on_login(self, conn: Session) -> None:
        """A client's first available presence: invitations no client has seen yet."""
        assert conn.owner is not None
        unseen = self._unseen.pop(conn.owner.address, {})
        for g in self.service.groups(conn.owner.address):
            if g.group in unseen and g.member:
                conn.send(self._invitation(conn, g, unseen[g.group]))

    def _invitation(self, conn: Session, info: GroupInfo, inviter: str) -> Message:
        assert conn.owner is not None
        invitation = new_message()
        invitation["to"] = conn.jid.full
        invitation["from"] = self.domains.contact(inviter)
        ET.SubElement(invitation.xml, f"{{{CONFERENCE}}}x",
                      {"jid": self.jid(info, conn.owner.address),
                       "reason": f"join the group {info.name}"})
        return invitation

    def _occupants(self, conn: Session, room: str, info: GroupInfo) -> None:
        """Occupant presences for members not yet shown; unavailable (321) for those
        no longer members."""
        assert conn.owner is not None
        owner = conn.owner.address
        seen = conn.room_seen.setdefault(room, set())
        now = {self.nick(owner, m): m for m in info.members if m != owner}
        for nick in sorted(seen - set(now)):
            seen.discard(nick)
            p = self._occupant(conn, room, nick, "none")
            p["type"] = "unavailable"
            p["muc"]["role"] = "none"
            p["muc"]["status_codes"] = {321}
            conn.send(p)
        for nick, member in now.items():
            if nick not in seen:
                seen.add(nick)
                conn.send(self._occupant(conn, room, nick,
                                         "owner" if member == info.creator else "member"))

    def on_message_arrived(self, event: GroupMessageArrived) -> None:
        owner = event.to
        info = next((g for g in self.service.groups(owner) if g.group == event.group), None)
        if info is None:
            return
        room = self.jid(info, owner)
        joined = [conn for conn in self.sessions.of(owner) if room in conn.rooms]
        if not joined:
            self.held.hold(event)
        for conn in joined:
            conn.send(self._said(conn, room, event, delayed=False))

    def _said(self, conn: Session, room: str, event: GroupMessageArrived, *,
              delayed: bool) -> Message:
        assert conn.owner is not None
        msg = self._message(conn, room, self.nick(conn.owner.address, event.sender))
        msg["body"] = event.text
        msg["id"] = event.message_id
        if delayed:
            ET.SubElement(msg.xml, f"{{{DELAY}}}delay", {"from": room,
                                                          "stamp": stamp(event.sent_at_ms)})
        return msg

    # --- stanzas -----------------------------------------------------------------------

    def _occupant(self, conn: Session, room: str, nick: str, affiliation: str) -> Presence:
        p = Presence()
        p["to"] = conn.jid.full
        p["from"] = f"{room}/{nick}"
        p["muc"]["affiliation"] = affiliation
        p["muc"]["role"] = "participant"
        return p

    def _self_presence(self, conn: Session, room: str, nick: str, ptype: str,
                       affiliation: str) -> Presence:
        p = self._occupant(conn, room, nick, affiliation)
        if ptype:
            p["type"] = ptype
            p["muc"]["role"] = "none"
        p["muc"]["jid"] = conn.jid.full
        p["muc"]["status_codes"] = {110}
        return p

    def _message(self, conn: Session, room: str, nick: str) -> Message:
        msg = new_message()
        msg["to"] = conn.jid.full
        msg["from"] = f"{room}/{nick}" if nick else room
        msg["type"] = "groupchat"
        return msg
