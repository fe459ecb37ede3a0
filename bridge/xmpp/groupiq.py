"""The IQs of the private-group rooms (``bridge.xmpp.groupmuc``): disco of the
service and of each room, the member list by affiliation, removal (``muc#admin``), and
the instant-room answers to ``muc#owner`` (there is nothing to configure)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID, Iq

from bridge.core.errors import UserError
from bridge.events import GroupInfo
from bridge.xmpp.errors import XmppError
from bridge.xmpp.jids import parse_jid
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.groupmuc import GroupRooms
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
MUC = "http://jabber.org/protocol/muc"
MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
FEATURES = (DISCO_INFO, MUC, "muc_membersonly", "muc_persistent", "muc_hidden",
            "muc_nonanonymous", "muc_unmoderated", "muc_unsecured")


class GroupIqs:
    def __init__(self, rooms: GroupRooms) -> None:
        self.rooms = rooms

    def install(self, iq: ServerIq) -> None:
        iq.identities["groups"] = [("conference", "text", "ParanoIM private groups")]
        iq.features["groups"] = [DISCO_INFO, DISCO_ITEMS, MUC]
        iq.identities["group"] = [("conference", "text", None)]
        iq.features["group"] = list(FEATURES)
        iq.items["server"].append((self.rooms.domain, "Private groups"))
        disco_info, disco_items = (iq.handler("rooms", n, "get") for n in (DISCO_INFO, DISCO_ITEMS))
        assert disco_info is not None and disco_items is not None
        iq.register("groups", DISCO_INFO, "get", disco_info)
        iq.register("group", DISCO_ITEMS, "get", disco_items)  # no occupants listed (§6.5)
        iq.register("groups", DISCO_ITEMS, "get", self._rooms)
        iq.register("group", DISCO_INFO, "get", self._room_info)
        iq.register("group", MUC_ADMIN, "set", self._admin)
        iq.register("group", MUC_ADMIN, "get", self._affiliations)
        iq.register("group", MUC_OWNER, "get", self._config)
        iq.register("group", MUC_OWNER, "set", self._config)

    def _group(self, conn: Session, to: JID | None) -> GroupInfo:
        assert conn.owner is not None
        info = self.rooms.find(conn.owner.address, to.local) if to is not None else None
        if info is None:
            raise XmppError("item-not-found", "there is no such group")
        return info

    def _rooms(self, conn: Session, el: ET.Element, payload: ET.Element,
               to: JID | None) -> Iq:
        assert conn.owner is not None
        reply = new_iq("result", el.get("id", ""))
        for g in self.rooms.service.groups(conn.owner.address):
            if g.member:
                reply["disco_items"].add_item(self.rooms.jid(g, conn.owner.address), name=g.name)
        _ = reply["disco_items"]["items"]
        return reply

    def _room_info(self, conn: Session, el: ET.Element, payload: ET.Element,
                   to: JID | None) -> Iq:
        info = self._group(conn, to)
        reply = new_iq("result", el.get("id", ""))
        reply["disco_info"].add_identity("conference", "text", name=info.name)
        for feature in FEATURES:
            reply["disco_info"].add_feature(feature)
        return reply

    def _config(self, conn: Session, el: ET.Element, payload: ET.Element,
                to: JID | None) -> Iq:
        """An instant room (XEP-0045 §10.1.2): nothing to configure, the group is
        members-only and persistent whatever a form says."""
        self._group(conn, to)
        reply = new_iq("result", el.get("id", ""))
        if el.get("type") == "get":
            query = ET.SubElement(reply.xml, f"{{{MUC_OWNER}}}query")
            ET.SubElement(query, "{jabber:x:data}x", {"type": "form"})
        return reply

    def _admin(self, conn: Session, el: ET.Element, payload: ET.Element,
               to: JID | None) -> Iq:
        assert conn.owner is not None and to is not None
        owner = conn.owner.address
        info = self._group(conn, to)
        items = payload.findall(f"{{{MUC_ADMIN}}}item")
        if len(items) != 1:
            raise XmppError("bad-request", "one item at a time", "modify")
        item = items[0]
        if item.get("role") != "none" and item.get("affiliation") not in ("none", "outcast"):
            raise XmppError("feature-not-implemented",
                            "members are invited, or removed (role or affiliation none)")
        member = self._member_of(info, owner, item, to.bare)
        try:
            self.rooms.service.remove_from_group(owner, info.group, member)
        except UserError as exc:
            raise XmppError("not-allowed", str(exc)) from None
        return new_iq("result", el.get("id", ""))

    def _affiliations(self, conn: Session, el: ET.Element, payload: ET.Element,
                      to: JID | None) -> Iq:
        """The member list by affiliation (XEP-0045 §9.5, §10.5): owner is the creator,
        member everyone else; no admins, no outcasts."""
        assert conn.owner is not None
        info = self._group(conn, to)
        asked = {i.get("affiliation") for i in payload.findall(f"{{{MUC_ADMIN}}}item")}
        reply = new_iq("result", el.get("id", ""))
        query = ET.SubElement(reply.xml, f"{{{MUC_ADMIN}}}query")
        for m in info.members:
            affiliation = "owner" if m == info.creator else "member"
            if affiliation in asked:
                jid = (conn.bare if m == conn.owner.address else self.rooms.domains.contact(m))
                ET.SubElement(query, f"{{{MUC_ADMIN}}}item",
                              {"affiliation": affiliation, "jid": jid, "role": "participant"})
        return reply

    def _member_of(self, info: GroupInfo, owner: str, item: ET.Element, room: str) -> str:
        jid = parse_jid(item.get("jid"))
        address = self.rooms.domains.address_of(jid) if jid is not None else None
        if address is None:
            nick = item.get("nick", "")
            address = next((m for m in info.members if m != owner
                            and self.rooms.nick(owner, m) == nick), None)
        if address is None or address not in info.members:
            raise XmppError("item-not-found", "no such member")
        return address
