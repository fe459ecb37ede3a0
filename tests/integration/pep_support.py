"""PEP requests as clients send them (XEP-0060/0163, XEP-0402, XEP-0048, XEP-0084).

Written out as raw XML, the way Gajim (nbxmpp) and Dino put them on the wire, so a
test shows what the server does with exactly those stanzas.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
import xml.etree.ElementTree as ET
import zlib
from typing import Any

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
DATA = "jabber:x:data"
NATIVE = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PRIVATE = "jabber:iq:private"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_META = "urn:xmpp:avatar:metadata"
VCARD = "vcard-temp"
# what Gajim and Dino publish their bookmarks with (XEP-0402 §5)
BOOKMARK_OPTIONS = {"pubsub#persist_items": "true", "pubsub#max_items": "max",
                    "pubsub#send_last_published_item": "never",
                    "pubsub#access_model": "whitelist"}


def form(values: dict[str, str], ftype: str = "submit", form_type: str = "") -> ET.Element:
    x = ET.Element(f"{{{DATA}}}x", {"type": ftype})
    for var, value in {"FORM_TYPE": form_type, **values}.items():
        if value:
            f = ET.SubElement(x, f"{{{DATA}}}field", {"var": var})
            ET.SubElement(f, f"{{{DATA}}}value").text = value
    return x


def conference(autojoin: bool = True, name: str = "", nick: str = "") -> ET.Element:
    conf = ET.Element(f"{{{NATIVE}}}conference", {"autojoin": "true" if autojoin else "false"})
    if name:
        conf.set("name", name)
    if nick:
        ET.SubElement(conf, f"{{{NATIVE}}}nick").text = nick
    return conf


def publish_iq(xmpp: slixmpp.ClientXMPP, node: str, item_id: str | None,
               payload: ET.Element, options: dict[str, str] | None = None) -> Any:
    iq = xmpp.make_iq_set()
    pubsub = ET.SubElement(iq.xml, f"{{{PUBSUB}}}pubsub")
    item = ET.SubElement(ET.SubElement(pubsub, f"{{{PUBSUB}}}publish", {"node": node}),
                         f"{{{PUBSUB}}}item", {"id": item_id} if item_id else {})
    item.append(payload)
    if options:
        ET.SubElement(pubsub, f"{{{PUBSUB}}}publish-options").append(
            form(options, form_type=PUBSUB + "#publish-options"))
    return iq


async def publish(xmpp: slixmpp.ClientXMPP, node: str, item_id: str | None,
                  payload: ET.Element, options: dict[str, str] | None = None) -> Any:
    return await publish_iq(xmpp, node, item_id, payload, options).send(timeout=10)


async def items(xmpp: slixmpp.ClientXMPP, node: str, to: str | None = None
                ) -> list[tuple[str, ET.Element]]:
    iq = xmpp.make_iq_get(ito=to)
    ET.SubElement(ET.SubElement(iq.xml, f"{{{PUBSUB}}}pubsub"), f"{{{PUBSUB}}}items",
                  {"node": node})
    reply = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    return [(i.get("id", ""), i[0]) for i in reply.xml.iter(f"{{{PUBSUB}}}item") if len(i)]


async def retract(xmpp: slixmpp.ClientXMPP, node: str, item_id: str) -> Any:
    iq = xmpp.make_iq_set()
    op = ET.SubElement(ET.SubElement(iq.xml, f"{{{PUBSUB}}}pubsub"), f"{{{PUBSUB}}}retract",
                       {"node": node, "notify": "true"})
    ET.SubElement(op, f"{{{PUBSUB}}}item", {"id": item_id})
    return await iq.send(timeout=10)  # type: ignore[no-untyped-call]


async def bookmarks(xmpp: slixmpp.ClientXMPP) -> list[tuple[str, str, str]]:
    """(room JID, autojoin, nick) of the XEP-0402 bookmarks, as Gajim reads them."""
    return [(jid, conf.get("autojoin", ""), conf.findtext(f"{{{NATIVE}}}nick") or "")
            for jid, conf in await items(xmpp, NATIVE)]


async def private_bookmarks(xmpp: slixmpp.ClientXMPP) -> list[tuple[str, str]]:
    """(room JID, autojoin) in XEP-0049 private storage, as profanity reads them."""
    iq = xmpp.make_iq_get()
    ET.SubElement(ET.SubElement(iq.xml, f"{{{PRIVATE}}}query"), f"{{{LEGACY}}}storage")
    reply = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    return [(c.get("jid", ""), c.get("autojoin", ""))
            for c in reply.xml.iter(f"{{{LEGACY}}}conference")]


class Events:
    """The pubsub event messages a client is sent (slixmpp's ``message`` event fires
    only for messages with a body)."""

    def __init__(self, xmpp: slixmpp.ClientXMPP) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        xmpp.register_handler(Callback(
            "pep events", MatchXPath(f"{{jabber:client}}message/{{{EVENT}}}event"),
            self.queue.put_nowait))

    async def wait(self, node: str, kind: str, item_id: str, timeout: float = 10) -> Any:
        """The next event of ``node`` with an ``item`` or ``retract`` of ``item_id``."""
        async def find() -> Any:
            while True:
                msg = await self.queue.get()
                if (node, kind, item_id) in event_items(msg):
                    assert msg["type"] == "headline" and msg["from"] == msg["to"].bare
                    return msg

        return await asyncio.wait_for(find(), timeout)


def event_items(msg: Any) -> list[tuple[str, str, str]]:
    """(node, 'item' or 'retract', id) of a pubsub event message."""
    found = []
    for items_el in msg.xml.iter(f"{{{EVENT}}}items"):
        for child in items_el:
            found.append((items_el.get("node", ""), child.tag.rsplit("}", 1)[-1],
                          child.get("id", "")))
    return found


def png(width: int = 1, height: int = 1, pad: int = 0) -> bytes:
    """A valid PNG (gray, 8 bit), padded with a text chunk of ``pad`` bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0))
            + (chunk(b"tEXt", b"c\x00" + b"x" * pad) if pad else b"")
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def avatar_data(image: bytes) -> tuple[str, ET.Element]:
    el = ET.Element(f"{{{AVATAR_DATA}}}data")
    el.text = base64.b64encode(image).decode()
    return hashlib.sha1(image).hexdigest(), el


def vcard_with_photo(image: bytes | None, mtype: str = "image/png") -> ET.Element:
    vcard = ET.Element(f"{{{VCARD}}}vCard")
    ET.SubElement(vcard, f"{{{VCARD}}}FN").text = "someone"
    if image is not None:
        photo = ET.SubElement(vcard, f"{{{VCARD}}}PHOTO")
        ET.SubElement(photo, f"{{{VCARD}}}TYPE").text = mtype
        ET.SubElement(photo, f"{{{VCARD}}}BINVAL").text = base64.b64encode(image).decode()
    return vcard


async def vcard_photo(xmpp: slixmpp.ClientXMPP) -> bytes | None:
    iq = xmpp.make_iq_get()
    ET.SubElement(iq.xml, f"{{{VCARD}}}vCard")
    reply = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    binval = reply.xml.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL")
    return base64.b64decode(binval) if binval else None
