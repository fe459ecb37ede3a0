"""Personal eventing (XEP-0163): each identity's own PEP service on its bare JID.

What clients keep here: room bookmarks (XEP-0402, and the XEP-0048 forms through
``bookmarks.py``) and the identity's avatar (XEP-0084, ``avatars.py``). A node is
the identity's alone: only its own clients read, publish, retract, configure or
delete, whatever access model a client asks for (another identity on this daemon
asking gets ``service-unavailable`` from ``server_iq``, as for any other JID).
Nodes persist in the identity's key-file record (``ServiceAPI.set_pep_node``),
encrypted with the keys when they are, and leave with the identity.

Every publish, retract, purge or delete is told to the identity's available
clients as a ``headline`` event message (``+notify`` interest is not tracked:
clients ignore events for nodes they do not know).

Bounds, each refused with an XMPP error saying which: a node name or item id of
``MAX_NAME`` bytes; an item of ``MAX_ITEM_BYTES`` serialised (the avatar's picture may
be larger, ``avatars.py``); ``MAX_ITEMS`` items in a node (its ``max_items`` is at
most that; a node kept at its limit loses its oldest item, except one at ``max`` —
bookmarks — which refuses the next); and the identity's total
(``bridge.identities.MAX_PEP_STORAGE``, ``MAX_PEP_NODES``).
"""

from __future__ import annotations

import copy
import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from slixmpp import JID, Iq

from bridge.api import ServiceAPI
from bridge.core.errors import UserError
from bridge.xmpp.errors import XmppError
from bridge.xmpp.pepnode import (
    DATA,
    MAX_ITEM_BYTES,
    MAX_ITEMS,
    PUBSUB,
    Node,
    VirtualNode,
    check_name,
    config_form,
    configure,
    form_values,
    parse_stored,
)
from bridge.xmpp.sessions import Sessions
from bridge.xmpp.slixfix import new_iq
from bridge.xmpp.stanzas import serialize

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

log = logging.getLogger(__name__)

OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
CLIENT = "jabber:client"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
FEATURES = [PUBSUB] + [f"{PUBSUB}#{f}" for f in (
    "access-presence", "access-whitelist", "access-open", "auto-create", "config-node",
    "config-node-max", "create-and-configure", "create-nodes", "delete-items",
    "delete-nodes", "item-ids", "multi-items", "persistent-items", "publish",
    "publish-options", "purge-nodes", "retract-items", "retrieve-items")]

Check = Callable[[str, ET.Element], None]  # (item id, payload) -> raise XmppError
Listener = Callable[[str, "Session | None"], None]  # (owner, origin) after a change


class Pep:
    def __init__(self, service: ServiceAPI, sessions: Sessions) -> None:
        self.service = service
        self.sessions = sessions
        self.checks: dict[str, Check] = {}  # node -> what its payloads must be
        self.defaults: dict[str, Node] = {}  # node -> settings it is made with
        self.max_item: dict[str, int] = {}  # node -> its own item size bound, if larger
        self.listeners: dict[str, list[Listener]] = {}  # node -> told after a change
        # nodes another module answers for (the XEP-0048 form of the bookmarks)
        self.virtual: dict[str, VirtualNode] = {}
        self.on_read: dict[str, Callable[[str], None]] = {}  # node -> before it is read

    def install(self, iq: ServerIq) -> None:
        for kind in ("server", "account"):  # no 'to' means one's own PEP service
            for itype in ("get", "set"):
                iq.register(kind, PUBSUB, itype, self.on_pubsub)
                iq.register(kind, OWNER, itype, self.on_owner)
        iq.identities["account"].append(("pubsub", "pep", None))
        plain_info = iq.handler("account", DISCO_INFO, "get")
        assert plain_info is not None

        def disco_info(conn: Session, el: ET.Element, payload: ET.Element,
                       to: JID | None) -> Iq:
            if not payload.get("node"):
                return plain_info(conn, el, payload, to)
            return self.on_node_info(conn, el, payload, to)

        iq.register("account", DISCO_INFO, "get", disco_info)
        iq.register("account", DISCO_ITEMS, "get", self.on_node_items)
        iq.features["account"] += FEATURES
        iq.features["server"] += FEATURES

    # --- storage --------------------------------------------------------------------------

    def load(self, owner: str, node: str) -> Node | None:
        hook = self.on_read.get(node)
        if hook is not None:
            hook(owner)
        text = self.service.pep_nodes(owner).get(node)
        if text is None:
            return None
        try:
            return Node.from_json(text)
        except (ValueError, TypeError, AttributeError):
            log.warning("a stored PEP node of %s… could not be read; treated as empty", owner[:8])
            return None

    def save(self, owner: str, node: str, state: Node | None) -> None:
        try:
            self.service.set_pep_node(owner, node, None if state is None else state.to_json())
        except UserError as exc:
            raise XmppError("resource-constraint", str(exc), "wait") from None

    def nodes(self, owner: str) -> list[str]:
        return sorted(self.service.pep_nodes(owner))

    def items(self, owner: str, node: str) -> list[tuple[str, ET.Element]]:
        state = self.load(owner, node)
        found = [(i, parse_stored(x)) for i, x in state.items] if state else []
        return [(i, el) for i, el in found if el is not None]

    # --- changes (also used by bookmarks.py and avatars.py) --------------------------------

    def publish(self, owner: str, node: str, item_id: str, payload: ET.Element,
                origin: Session | None, options: dict[str, str] | None = None) -> None:
        check = self.checks.get(node)
        if check is not None:
            check(item_id, payload)
        text = serialize(copy.deepcopy(payload)).decode()
        limit = self.max_item.get(node, MAX_ITEM_BYTES)
        if len(text.encode()) > limit:
            raise XmppError("not-acceptable", f"an item may be at most {limit // 1024} "
                            "KiB", "modify")
        state = self.load(owner, node) or copy.deepcopy(self.defaults.get(node, Node()))
        if options:
            configure(state, options)
        items = [(i, x) for i, x in state.items if i != item_id]
        if len(items) >= state.max_items:
            if state.max_items >= MAX_ITEMS:
                raise XmppError("not-acceptable", f"this node is full (at most {MAX_ITEMS} "
                                "items): retract some first", "modify")
            items = items[len(items) - state.max_items + 1:]
        state.items = [*items, (item_id, text)]
        self.save(owner, node, state)
        item = ET.Element(f"{{{EVENT}}}item", {"id": item_id})
        item.append(copy.deepcopy(payload))
        self._notify(owner, node, "items", [item])
        self._changed(owner, node, origin)

    def replace(self, owner: str, node: str, items: list[tuple[str, ET.Element]],
                origin: Session | None) -> None:
        """Make the node hold exactly ``items`` (one write), telling clients what changed."""
        check = self.checks.get(node)
        new: list[tuple[str, str]] = []
        for item_id, payload in items:
            check_name(item_id, "item id")
            if check is not None:
                check(item_id, payload)
            new.append((item_id, serialize(copy.deepcopy(payload)).decode()))
        state = self.load(owner, node) or copy.deepcopy(self.defaults.get(node, Node()))
        if len(new) > state.max_items:
            raise XmppError("not-acceptable", f"at most {state.max_items} items here", "modify")
        old = dict(state.items)
        state.items = new
        self.save(owner, node, state)
        kept = {i for i, _ in new}
        for item_id in old:
            if item_id not in kept:
                self._notify(owner, node, "items",
                             [ET.Element(f"{{{EVENT}}}retract", {"id": item_id})])
        for (item_id, text), (_, payload) in zip(new, items, strict=True):
            if old.get(item_id) != text:
                item = ET.Element(f"{{{EVENT}}}item", {"id": item_id})
                item.append(copy.deepcopy(payload))
                self._notify(owner, node, "items", [item])
        self._changed(owner, node, origin)

    def retract(self, owner: str, node: str, item_id: str, origin: Session | None) -> bool:
        state = self.load(owner, node)
        if state is None or not any(i == item_id for i, _ in state.items):
            return False
        state.items = [(i, x) for i, x in state.items if i != item_id]
        self.save(owner, node, state)
        self._notify(owner, node, "items", [ET.Element(f"{{{EVENT}}}retract", {"id": item_id})])
        self._changed(owner, node, origin)
        return True

    def delete(self, owner: str, node: str, origin: Session | None, *, purge: bool = False) -> None:
        state = self.load(owner, node)
        if state is None:
            raise XmppError("item-not-found", "no such node")
        if purge:
            state.items = []
        self.save(owner, node, state if purge else None)
        self._notify(owner, node, "purge" if purge else "delete", [])
        self._changed(owner, node, origin)

    def _changed(self, owner: str, node: str, origin: Session | None) -> None:
        for listener in self.listeners.get(node, []):
            listener(owner, origin)

    def notify(self, owner: str, node: str, item_id: str, payload: ET.Element) -> None:
        """Tell the identity's clients of an item of a node another module answers for."""
        item = ET.Element(f"{{{EVENT}}}item", {"id": item_id})
        item.append(payload)
        self._notify(owner, node, "items", [item])

    def _notify(self, owner: str, node: str, what: str, children: list[ET.Element]) -> None:
        sessions = self.sessions.available(owner)
        if not sessions:
            return
        bare = sessions[0].bare
        for session in sessions:
            msg = ET.Element(f"{{{CLIENT}}}message", {
                "from": bare, "to": session.jid.full, "type": "headline",
                "id": secrets.token_hex(8)})
            event = ET.SubElement(msg, f"{{{EVENT}}}event")
            ET.SubElement(event, f"{{{EVENT}}}{what}", {"node": node}).extend(
                copy.deepcopy(children))
            session.send(msg)

    # --- IQ handlers (server_iq.Handler) -----------------------------------------------

    def on_node_info(self, conn: Session, el: ET.Element, payload: ET.Element,
                     to: JID | None) -> Iq:
        """disco#info on one of the identity's nodes (XEP-0060 §5.3)."""
        assert conn.owner is not None
        node = check_name(payload.get("node"), "node name")
        if node not in self.virtual and self.load(conn.owner.address, node) is None:
            raise XmppError("item-not-found", "no such node")
        reply = new_iq("result", el.get("id", ""))
        query = ET.SubElement(reply.xml, f"{{{DISCO_INFO}}}query", {"node": node})
        ET.SubElement(query, f"{{{DISCO_INFO}}}identity", {"category": "pubsub", "type": "leaf"})
        ET.SubElement(query, f"{{{DISCO_INFO}}}feature", {"var": PUBSUB})
        return reply

    def on_node_items(self, conn: Session, el: ET.Element, payload: ET.Element,
                      to: JID | None) -> Iq:
        """disco#items on the account: its nodes (XEP-0060 §5.2); on a node: its items."""
        assert conn.owner is not None
        owner, bare = conn.owner.address, conn.jid.bare
        reply = new_iq("result", el.get("id", ""))
        node = payload.get("node")
        query = ET.SubElement(reply.xml, f"{{{DISCO_ITEMS}}}query", {"node": node} if node else {})
        if node:
            check_name(node, "node name")
            for item_id, _ in self.items(owner, node):
                ET.SubElement(query, f"{{{DISCO_ITEMS}}}item", {"jid": bare, "name": item_id})
        else:
            for name in self.nodes(owner):
                ET.SubElement(query, f"{{{DISCO_ITEMS}}}item", {"jid": bare, "node": name})
        return reply

    def on_pubsub(self, conn: Session, el: ET.Element, payload: ET.Element,
                  to: JID | None) -> Iq:
        assert conn.owner is not None
        owner, itype = conn.owner.address, el.get("type")
        reply = new_iq("result", el.get("id", ""))
        ops = [c for c in payload if c.tag != f"{{{PUBSUB}}}publish-options"
               and c.tag != f"{{{PUBSUB}}}configure"]
        if len(ops) != 1:
            raise XmppError("bad-request", "one pubsub operation at a time", "modify")
        op, verb = ops[0], ops[0].tag.rsplit("}", 1)[-1]
        node = check_name(op.get("node"), "node name") if verb not in (
            "subscriptions", "affiliations") else op.get("node", "")
        if itype == "get" and verb == "items":
            reply.xml.append(self._items_answer(owner, node, op))
        elif itype == "set" and verb == "publish":
            self._on_publish(conn, node, op, payload, reply)
        elif itype == "set" and verb == "retract":
            items = op.findall(f"{{{PUBSUB}}}item")
            if not items:
                raise XmppError("bad-request", "retract names an item", "modify")
            for item in items:
                item_id = check_name(item.get("id"), "item id")
                virtual = self.virtual.get(node)
                if virtual is not None:
                    virtual.retract(owner, item_id, conn)
                elif not self.retract(owner, node, item_id, conn):
                    raise XmppError("item-not-found", "no such item")
        elif itype == "set" and verb == "create":
            if self.load(owner, node) is not None or node in self.virtual:
                raise XmppError("conflict", "that node exists")
            state = copy.deepcopy(self.defaults.get(node, Node()))
            config = payload.find(f"{{{PUBSUB}}}configure/{{{DATA}}}x")
            if config is not None:
                configure(state, form_values(config))
            self.save(owner, node, state)
        elif itype == "set" and verb in ("subscribe", "unsubscribe"):
            if verb == "subscribe":  # one's own nodes: always told already
                sub = ET.SubElement(ET.SubElement(reply.xml, f"{{{PUBSUB}}}pubsub"),
                                    f"{{{PUBSUB}}}subscription")
                sub.attrib.update(node=node, jid=op.get("jid") or conn.jid.bare,
                                  subscription="subscribed")
        elif itype == "get" and verb in ("subscriptions", "affiliations"):
            ET.SubElement(ET.SubElement(reply.xml, f"{{{PUBSUB}}}pubsub"), f"{{{PUBSUB}}}{verb}")
        else:
            raise XmppError("feature-not-implemented", f"pubsub {verb} ({itype}) is not offered")
        return reply

    def _items_answer(self, owner: str, node: str, op: ET.Element) -> ET.Element:
        virtual = self.virtual.get(node)
        found = virtual.items(owner) if virtual is not None else None
        if found is None:
            if self.load(owner, node) is None:
                raise XmppError("item-not-found", "no such node")
            found = self.items(owner, node)
        wanted = [i.get("id") for i in op.findall(f"{{{PUBSUB}}}item")]
        if wanted:
            found = [(i, x) for i, x in found if i in wanted]
        max_items = op.get("max_items")
        if max_items is not None:
            if not max_items.isdigit() or len(max_items) > 6:
                raise XmppError("bad-request", "max_items is a number", "modify")
            found = found[max(0, len(found) - int(max_items)):] if int(max_items) else []
        pubsub = ET.Element(f"{{{PUBSUB}}}pubsub")
        items = ET.SubElement(pubsub, f"{{{PUBSUB}}}items", {"node": node})
        for item_id, element in found:
            ET.SubElement(items, f"{{{PUBSUB}}}item", {"id": item_id}).append(element)
        return pubsub

    def _on_publish(self, conn: Session, node: str, op: ET.Element, payload: ET.Element,
                    reply: Iq) -> None:
        assert conn.owner is not None
        items = op.findall(f"{{{PUBSUB}}}item")
        if len(items) != 1 or len(items[0]) != 1:
            raise XmppError("bad-request", "publish one item with one payload", "modify")
        item_id = check_name(items[0].get("id") or secrets.token_hex(8), "item id")
        form = payload.find(f"{{{PUBSUB}}}publish-options/{{{DATA}}}x")
        options = form_values(form) if form is not None else None
        virtual = self.virtual.get(node)
        if virtual is not None:
            virtual.publish(conn.owner.address, item_id, items[0][0], conn)
        else:
            self.publish(conn.owner.address, node, item_id, items[0][0], conn, options)
        published = ET.SubElement(ET.SubElement(reply.xml, f"{{{PUBSUB}}}pubsub"),
                                  f"{{{PUBSUB}}}publish", {"node": node})
        ET.SubElement(published, f"{{{PUBSUB}}}item", {"id": item_id})

    def on_owner(self, conn: Session, el: ET.Element, payload: ET.Element,
                 to: JID | None) -> Iq:
        assert conn.owner is not None
        owner, itype = conn.owner.address, el.get("type")
        reply = new_iq("result", el.get("id", ""))
        if len(payload) != 1:
            raise XmppError("bad-request", "one pubsub#owner operation at a time", "modify")
        op, verb = payload[0], payload[0].tag.rsplit("}", 1)[-1]
        node = check_name(op.get("node"), "node name")
        if verb in ("delete", "purge") and itype == "set":
            self.delete(owner, node, conn, purge=verb == "purge")
            return reply
        if verb != "configure":
            raise XmppError("feature-not-implemented", f"pubsub#owner {verb} is not offered")
        state = self.load(owner, node)
        if state is None:
            raise XmppError("item-not-found", "no such node")
        if itype == "get":
            answer = ET.SubElement(reply.xml, f"{{{OWNER}}}pubsub")
            ET.SubElement(answer, f"{{{OWNER}}}configure", {"node": node}).append(
                config_form(state))
            return reply
        form = op.find(f"{{{DATA}}}x")
        if form is not None and form.get("type") != "cancel":
            configure(state, form_values(form))
            self.save(owner, node, state)
        return reply


