"""A PEP node as kept in the key file, and its settings (XEP-0060 node config).

``pep.py`` answers the IQs; this is what a node is: its access model, how many
items it keeps, its items (id, serialised payload), and the data form clients read
and change its settings with. Limits are described in ``pep.py``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.xmpp.errors import XmppError

if TYPE_CHECKING:
    from bridge.xmpp.sessions import Session

PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
MAX_NAME = 256  # bytes of a node name or an item id
MAX_ITEM_BYTES = 48 * 1024  # one item, serialised (avatars.py allows its picture more)
MAX_ITEMS = 256  # items in one node
ACCESS_MODELS = ("open", "presence", "roster", "whitelist", "authorize")


@dataclass
class Node:
    access: str = "presence"
    max_items: int = 1
    items: list[tuple[str, str]] = field(default_factory=list)  # (id, payload xml), oldest first

    def to_json(self) -> str:
        return json.dumps({"access": self.access, "max": self.max_items,
                           "items": [list(i) for i in self.items]})

    @classmethod
    def from_json(cls, text: str) -> Node:
        raw = json.loads(text)
        items = [(str(i), str(x)) for i, x in raw.get("items", [])]
        access = raw.get("access")
        return cls(access if access in ACCESS_MODELS else "presence",
                   max(1, min(int(raw.get("max", 1)), MAX_ITEMS)), items)


def parse_stored(text: str) -> ET.Element | None:
    """An element we wrote ourselves, parsed as cautiously as input."""
    if "<!" in text or "<?" in text:
        return None
    try:
        return ET.fromstring(text)  # noqa: S314 - no DTD (above); from the key file
    except ET.ParseError:
        return None


def check_name(value: str | None, what: str) -> str:
    if not value:
        raise XmppError("bad-request", f"a {what} is required", "modify")
    if len(value.encode()) > MAX_NAME:
        raise XmppError("not-acceptable", f"a {what} may be at most {MAX_NAME} bytes", "modify")
    return value


class VirtualNode:
    """A node whose items another store holds (``bookmarks.LegacyPepNode``)."""

    def items(self, owner: str) -> list[tuple[str, ET.Element]]:
        raise NotImplementedError

    def publish(self, owner: str, item_id: str, payload: ET.Element,
                origin: Session | None) -> None:
        raise NotImplementedError

    def retract(self, owner: str, item_id: str, origin: Session | None) -> None:
        raise NotImplementedError


def form_values(form: ET.Element) -> dict[str, str]:
    values = {}
    for f in form.findall(f"{{{DATA}}}field")[:64]:
        var = f.get("var") or ""
        if var.startswith("pubsub#"):
            values[var] = (f.findtext(f"{{{DATA}}}value") or "").strip()
    return values


def configure(state: Node, values: dict[str, str]) -> None:
    access = values.get("pubsub#access_model")
    if access is not None:
        if access not in ACCESS_MODELS:
            raise XmppError("not-acceptable", f"unknown access model {access[:32]!r}", "modify")
        state.access = access
    max_items = values.get("pubsub#max_items")
    if max_items is not None:
        if max_items == "max":
            state.max_items = MAX_ITEMS
        elif max_items.isdigit() and len(max_items) < 8 and int(max_items) > 0:
            state.max_items = min(int(max_items), MAX_ITEMS)
        else:
            raise XmppError("not-acceptable", "max_items is a positive number or max", "modify")
        state.items = state.items[max(0, len(state.items) - state.max_items):]
    if values.get("pubsub#persist_items") in ("0", "false"):
        raise XmppError("not-acceptable", "items are always kept here", "modify")


def config_form(state: Node) -> ET.Element:
    form = ET.Element(f"{{{DATA}}}x", {"type": "form"})
    fields = [("FORM_TYPE", "hidden", PUBSUB + "#node_config"),
              ("pubsub#access_model", "list-single", state.access),
              ("pubsub#max_items", "text-single", str(state.max_items)),
              ("pubsub#persist_items", "boolean", "true"),
              ("pubsub#deliver_payloads", "boolean", "true"),
              ("pubsub#notify_retract", "boolean", "true"),
              ("pubsub#send_last_published_item", "list-single", "never")]
    for var, ftype, value in fields:
        f = ET.SubElement(form, f"{{{DATA}}}field", {"var": var, "type": ftype})
        ET.SubElement(f, f"{{{DATA}}}value").text = value
        if var == "pubsub#access_model":
            for model in ACCESS_MODELS:
                option = ET.SubElement(f, f"{{{DATA}}}option")
                ET.SubElement(option, f"{{{DATA}}}value").text = model
    return form
