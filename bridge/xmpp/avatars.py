"""The identity's own avatar, for its own clients: XEP-0084 and vCard-temp.

One picture per identity, kept once as its XEP-0084 PEP nodes
(``urn:xmpp:avatar:data``, ``urn:xmpp:avatar:metadata``, ``pep.py``), in the
key-file record. Clients that set it with vCard-temp (XEP-0054, as Pidgin and
XEP-0153 clients do) write those nodes, and a vCard-temp get answers from them, so
a picture set in Gajim shows in Pidgin and the other way round
(``urn:xmpp:pep-vcard-conversion:0``).

A picture is at most ``MAX_AVATAR`` bytes and must start as a PNG or a JPEG does;
its item id is its SHA-1, as XEP-0084 says. Anything else is refused with
``not-acceptable`` before it is stored. Contacts' pictures do not travel over the
network: a contact's vCard has its petname only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID, Iq

from bridge.xmpp.errors import XmppError
from bridge.xmpp.pep import Pep
from bridge.xmpp.pepnode import Node
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
VCARD = "vcard-temp"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
# Bytes of picture. Gajim publishes a 200x200 PNG, which for a photo is often 60-110 KB;
# the identity's whole PEP (bridge.identities.MAX_PEP_STORAGE) holds it in base64.
MAX_AVATAR = 128 * 1024
MAX_BASE64 = (MAX_AVATAR + 2) // 3 * 4 + 4096  # its base64, with line breaks
TYPES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}


def picture(b64: str | None) -> tuple[bytes, str]:
    """(bytes, media type) of a base64 picture; XmppError unless a small PNG or JPEG."""
    text = "".join((b64 or "").split()) if b64 and len(b64) <= MAX_BASE64 else None
    if text is None or len(text) > (MAX_AVATAR + 2) // 3 * 4:
        raise XmppError("not-acceptable", f"an avatar is a PNG or JPEG of at most "
                        f"{MAX_AVATAR // 1024} KiB", "modify")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise XmppError("bad-request", "the avatar is not base64", "modify") from None
    for magic, mtype in TYPES.items():
        if data.startswith(magic):
            return data, mtype
    raise XmppError("not-acceptable", "an avatar must be a PNG or a JPEG image", "modify")


def _check_data(item_id: str, payload: ET.Element) -> None:
    if payload.tag != f"{{{DATA}}}data":
        raise XmppError("bad-request", f"avatar data is a <data xmlns='{DATA}'/>", "modify")
    data, _ = picture(payload.text)
    if hashlib.sha1(data).hexdigest() != item_id:  # noqa: S324 - XEP-0084 names it so
        raise XmppError("bad-request", "an avatar's item id is the SHA-1 of its bytes", "modify")


def _check_metadata(item_id: str, payload: ET.Element) -> None:
    if payload.tag != f"{{{METADATA}}}metadata":
        raise XmppError("bad-request", f"avatar metadata is a <metadata xmlns='{METADATA}'/>",
                        "modify")
    infos = payload.findall(f"{{{METADATA}}}info")
    if len(infos) > 4 or len(payload) > 4:
        raise XmppError("not-acceptable", "at most four <info/> in avatar metadata", "modify")
    for info in infos:
        size = info.get("bytes", "")
        if not size.isdigit() or len(size) > 9 or (int(size) > MAX_AVATAR and not info.get("url")):
            raise XmppError("not-acceptable", f"an avatar may be at most {MAX_AVATAR // 1024} "
                            "KiB", "modify")


class Avatars:
    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        for node in (DATA, METADATA):
            pep.defaults[node] = Node(access="presence", max_items=1)
        pep.checks[DATA] = _check_data
        pep.max_item[DATA] = MAX_BASE64 + 256
        pep.checks[METADATA] = _check_metadata

    def install(self, iq: ServerIq) -> None:
        for kind in ("server", "account"):
            iq.register(kind, VCARD, "get", self.on_vcard_get)
            iq.register(kind, VCARD, "set", self.on_vcard_set)
        iq.features["account"].append(CONVERSION)
        iq.features["server"].append(CONVERSION)

    def current(self, owner: str) -> tuple[str, str] | None:
        """(media type, base64) of the identity's picture, if it has one."""
        meta = self.pep.items(owner, METADATA)
        info = meta[-1][1].find(f"{{{METADATA}}}info") if meta else None
        if info is None:
            return None
        for item_id, data in self.pep.items(owner, DATA):
            if item_id == info.get("id") and data.text:
                return info.get("type", "image/png"), data.text
        return None

    def set_picture(self, owner: str, b64: str | None, origin: Session | None) -> None:
        """The identity's picture (None: none), as XEP-0084 publishes it."""
        metadata = ET.Element(f"{{{METADATA}}}metadata")
        if b64 is not None:
            data, mtype = picture(b64)
            sha = hashlib.sha1(data).hexdigest()  # noqa: S324 - XEP-0084 names it so
            element = ET.Element(f"{{{DATA}}}data")
            element.text = base64.b64encode(data).decode()
            self.pep.publish(owner, DATA, sha, element, origin)
            ET.SubElement(metadata, f"{{{METADATA}}}info",
                          {"id": sha, "bytes": str(len(data)), "type": mtype})
            self.pep.publish(owner, METADATA, sha, metadata, origin)
            return
        if self.pep.items(owner, METADATA) or self.pep.items(owner, DATA):
            self.pep.publish(owner, METADATA, "current", metadata, origin)
            if self.pep.load(owner, DATA) is not None:
                self.pep.delete(owner, DATA, origin)

    # --- IQ handlers (server_iq.Handler) -----------------------------------------------

    def on_vcard_get(self, conn: Session, el: ET.Element, payload: ET.Element,
                     to: JID | None) -> Iq:
        assert conn.owner is not None
        reply = new_iq("result", el.get("id", ""))
        vcard = ET.SubElement(reply.xml, f"{{{VCARD}}}vCard")
        ET.SubElement(vcard, f"{{{VCARD}}}FN").text = conn.owner.nick
        ET.SubElement(vcard, f"{{{VCARD}}}NICKNAME").text = conn.owner.nick
        current = self.current(conn.owner.address)
        if current is not None:
            photo = ET.SubElement(vcard, f"{{{VCARD}}}PHOTO")
            ET.SubElement(photo, f"{{{VCARD}}}TYPE").text = current[0]
            ET.SubElement(photo, f"{{{VCARD}}}BINVAL").text = current[1]
        return reply

    def on_vcard_set(self, conn: Session, el: ET.Element, payload: ET.Element,
                     to: JID | None) -> Iq:
        """Only the picture is kept: the name shown is the identity's nick."""
        assert conn.owner is not None
        if payload.tag != f"{{{VCARD}}}vCard":
            raise XmppError("bad-request", "expected a vCard", "modify")
        photo = payload.find(f"{{{VCARD}}}PHOTO")
        binval = photo.findtext(f"{{{VCARD}}}BINVAL") if photo is not None else None
        self.set_picture(conn.owner.address, binval or None, conn)
        return new_iq("result", el.get("id", ""))
