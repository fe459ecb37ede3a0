"""Room bookmarks: one list per identity, in the three forms clients use.

- XEP-0402 (Gajim, Dino, Conversations): the PEP node ``urn:xmpp:bookmarks:1``, one
  item per room, its id the room's JID. This node is the list itself.
- XEP-0048 over PEP (older Gajim): the node ``storage:bookmarks``, one item
  ``current`` holding ``<storage/>`` — made from and written into the list above.
- XEP-0048 in private storage, XEP-0049 (profanity, Pidgin's plugins, older
  clients): ``<storage xmlns='storage:bookmarks'/>`` in ``jabber:iq:private``, the
  same again (``private.py`` asks here).

So a bookmark kept by any client is seen by all of them (what the
``urn:xmpp:bookmarks:1#compat``, ``#compat-pep`` and ``urn:xmpp:bookmarks-conversion:0``
features promise), and a list kept in private storage by a daemon before PEP
existed becomes the XEP-0402 node the first time it is read.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp.jid import InvalidJID

from bridge.xmpp.errors import XmppError
from bridge.xmpp.jids import parse_jid
from bridge.xmpp.pep import Pep
from bridge.xmpp.pepnode import MAX_ITEMS, MAX_NAME, Node, VirtualNode, parse_stored
from bridge.xmpp.stanzas import serialize

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
LEGACY_KEY = f"{{{LEGACY}}}storage"  # its private-storage key
FEATURES = [NATIVE + "#compat", NATIVE + "#compat-pep", "urn:xmpp:bookmarks-conversion:0"]


def _room(jid: str | None) -> str:
    try:
        parsed = parse_jid(jid) if jid and len(jid.encode()) <= MAX_NAME else None
    except InvalidJID:
        parsed = None
    if parsed is None or not parsed.local or parsed.resource:
        raise XmppError("bad-request", "a bookmark names a room by its bare JID", "modify")
    return parsed.bare


def _check(item_id: str, payload: ET.Element) -> None:
    if payload.tag != f"{{{NATIVE}}}conference":
        raise XmppError("bad-request", f"a bookmark is a <conference xmlns='{NATIVE}'/>",
                        "modify")
    if _room(item_id) != item_id:
        raise XmppError("bad-request", "a bookmark's item id is the room's bare JID", "modify")


def to_legacy(items: list[tuple[str, ET.Element]]) -> ET.Element:
    storage = ET.Element(LEGACY_KEY)
    for jid, conf in items:
        c = ET.SubElement(storage, f"{{{LEGACY}}}conference", {"jid": jid})
        if conf.get("name"):
            c.set("name", conf.get("name", ""))
        autojoin = conf.get("autojoin") in ("true", "1")
        c.set("autojoin", "true" if autojoin else "false")
        for tag in ("nick", "password"):
            text = conf.findtext(f"{{{NATIVE}}}{tag}")
            if text:
                ET.SubElement(c, f"{{{LEGACY}}}{tag}").text = text
    return storage


def from_legacy(storage: ET.Element) -> list[tuple[str, ET.Element]]:
    if storage.tag != LEGACY_KEY:
        raise XmppError("bad-request", f"bookmarks are a <storage xmlns='{LEGACY}'/>", "modify")
    confs = storage.findall(f"{{{LEGACY}}}conference")
    if len(confs) > MAX_ITEMS:
        raise XmppError("not-acceptable", f"at most {MAX_ITEMS} bookmarks", "modify")
    items: dict[str, ET.Element] = {}
    for c in confs:
        jid = _room(c.get("jid"))
        conf = ET.Element(f"{{{NATIVE}}}conference")
        if c.get("name"):
            conf.set("name", c.get("name", ""))
        conf.set("autojoin", "true" if c.get("autojoin") in ("true", "1") else "false")
        for tag in ("nick", "password"):
            text = c.findtext(f"{{{LEGACY}}}{tag}")
            if text:
                ET.SubElement(conf, f"{{{NATIVE}}}{tag}").text = text
        items[jid] = conf
    return list(items.items())


class Bookmarks(VirtualNode):
    """The XEP-0048 forms, answered from and written into the XEP-0402 node."""

    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        pep.defaults[NATIVE] = Node(access="whitelist", max_items=MAX_ITEMS)
        pep.checks[NATIVE] = _check
        pep.on_read[NATIVE] = self._migrate
        pep.listeners.setdefault(NATIVE, []).append(self._tell_legacy)
        pep.virtual[LEGACY] = self

    def install(self, iq: ServerIq) -> None:
        iq.features["account"] += FEATURES
        iq.features["server"] += FEATURES
        iq.private.bookmarks = self

    def _migrate(self, owner: str) -> None:
        """A list kept in private storage before PEP: it becomes the node, once."""
        service = self.pep.service
        if NATIVE in service.pep_nodes(owner):
            return
        text = service.client_storage(owner).get(LEGACY_KEY)
        storage = parse_stored(text) if text else None
        if storage is None:
            return
        try:
            items = from_legacy(storage)
        except XmppError:
            return
        state = Node(access="whitelist", max_items=MAX_ITEMS)
        state.items = [(jid, serialize(conf).decode()) for jid, conf in items]
        self.pep.save(owner, NATIVE, state)

    def legacy(self, owner: str) -> ET.Element:
        return to_legacy(self.pep.items(owner, NATIVE))

    def set_legacy(self, owner: str, storage: ET.Element, origin: Session | None) -> None:
        self.pep.replace(owner, NATIVE, from_legacy(storage), origin)

    def _tell_legacy(self, owner: str, origin: Session | None) -> None:
        self.pep.notify(owner, LEGACY, "current", self.legacy(owner))

    # --- the node storage:bookmarks (VirtualNode) ----------------------------------------

    def items(self, owner: str) -> list[tuple[str, ET.Element]]:
        return [("current", self.legacy(owner))]

    def publish(self, owner: str, item_id: str, payload: ET.Element,
                origin: Session | None) -> None:
        self.set_legacy(owner, payload, origin)

    def retract(self, owner: str, item_id: str, origin: Session | None) -> None:
        self.pep.replace(owner, NATIVE, [], origin)
