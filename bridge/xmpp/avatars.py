"""Avatars: the identity's own (XEP-0084 and vCard-temp), and its contacts'.

One picture per identity, kept once as its XEP-0084 PEP nodes
(``urn:xmpp:avatar:data``, ``urn:xmpp:avatar:metadata``, ``pep.py``), in the
key-file record. Clients that set it with vCard-temp (XEP-0054, as Pidgin and
XEP-0153 clients do) write those nodes, and a vCard-temp get answers from them, so
a picture set in Gajim shows in Pidgin and the other way round
(``urn:xmpp:pep-vcard-conversion:0``).

A picture is at most ``MAX_AVATAR`` bytes and must start as a PNG or a JPEG does;
its item id is its SHA-1, as XEP-0084 says. Anything else is refused with
``not-acceptable`` before it is stored.

Whenever the metadata node changes, the picture is given to the service
(``ServiceAPI.share_avatar``), which sends it to the accepted contacts
(``bridge.avatarbook``; ``[xmpp] share_avatar``); at start each identity's picture is
given to it unsent, for contacts accepted later. A contact's picture, once their
daemon sent it and this one checked and kept it, shows as a server shows a
contact's avatar: a vCard-temp get on the contact's JID answers its PHOTO; the
contact's available presence carries its XEP-0153 ``vcard-temp:x:update`` hash; and
when it changes, each available client gets that presence again and an XEP-0084
metadata event from the contact's bare JID, whose ``urn:xmpp:avatar:data`` and
``metadata`` items a pubsub items get on that JID answers. A contact who never sent
one has an ``<x/>`` without ``<photo/>`` ("not ready to say").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID, Iq, Presence

from bridge.api import MAX_AVATAR as MAX_AVATAR
from bridge.api import TYPES as TYPES
from bridge.core.errors import UserError
from bridge.events import ContactAvatarChanged
from bridge.xmpp.errors import XmppError
from bridge.xmpp.pep import EVENT, Pep
from bridge.xmpp.pepnode import PUBSUB, Node
from bridge.xmpp.presences import shown
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

log = logging.getLogger(__name__)

DATA = "urn:xmpp:avatar:data"
METADATA = "urn:xmpp:avatar:metadata"
VCARD = "vcard-temp"
UPDATE = "vcard-temp:x:update"
CONVERSION = "urn:xmpp:pep-vcard-conversion:0"
# The identity's whole PEP (bridge.identities.MAX_PEP_STORAGE) holds MAX_AVATAR in base64.
MAX_BASE64 = (MAX_AVATAR + 2) // 3 * 4 + 4096  # its base64, with line breaks


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
        pep.listeners.setdefault(METADATA, []).append(self._share)
        self.iq: ServerIq | None = None

    def install(self, iq: ServerIq) -> None:
        self.iq = iq
        for kind in ("server", "account"):
            iq.register(kind, VCARD, "get", self.on_vcard_get)
            iq.register(kind, VCARD, "set", self.on_vcard_set)
        iq.features["account"].append(CONVERSION)
        iq.features["server"].append(CONVERSION)
        contact_vcard = iq.handler("contact", VCARD, "get")
        assert contact_vcard is not None

        def vcard_with_photo(conn: Session, el: ET.Element, payload: ET.Element,
                             to: JID | None) -> Iq:
            reply = contact_vcard(conn, el, payload, to)
            vcard = reply.xml.find(f"{{{VCARD}}}vCard")
            known = self._of_contact(conn, to)
            if vcard is not None and known is not None:
                photo = ET.SubElement(vcard, f"{{{VCARD}}}PHOTO")
                ET.SubElement(photo, f"{{{VCARD}}}TYPE").text = known[0]
                ET.SubElement(photo, f"{{{VCARD}}}BINVAL").text = base64.b64encode(
                    known[1]).decode()
            return reply
        iq.register("contact", VCARD, "get", vcard_with_photo)
        iq.register("contact", PUBSUB, "get", self.on_contact_items)
        iq.gateway.contact_avatar = self.on_contact_avatar
        iq.gateway.avatars_at_login = self.on_login
        iq.gateway.roster.photo = self.add_photo
        for identity in self.pep.service.identities():  # for contacts accepted later
            if self.current(identity.address) is not None:
                self._share(identity.address, None, send=False)

    def _share(self, owner: str, origin: Session | None, *, send: bool = True) -> None:
        current = self.current(owner)
        try:
            self.pep.service.share_avatar(
                owner, base64.b64decode(current[1]) if current else None, send=send)
        except (UserError, binascii.Error, ValueError) as exc:
            log.warning("the avatar of %s… is not shared: %s", owner[:8], exc)

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

    # --- contacts' pictures --------------------------------------------------------------

    def _of_contact(self, conn: Session, to: JID | None) -> tuple[str, bytes] | None:
        assert conn.owner is not None and self.iq is not None
        address = self.iq.domains.address_of(to) if to is not None else None
        return self.pep.service.contact_avatar(conn.owner.address, address) if address else None

    def add_photo(self, conn: Session, frm: str, presence: Presence) -> None:
        """A contact's available presence carries their picture's XEP-0153 hash; while
        none is known, an ``<x/>`` without ``<photo/>`` ("not ready to say", XEP-0153
        §4.2), so a client keeps a picture it cached (memory mode forgets them)."""
        jid = JID(frm)
        if self.iq is None or self.iq.domains.address_of(jid) is None:
            return
        x = ET.SubElement(presence.xml, f"{{{UPDATE}}}x")
        known = self._of_contact(conn, jid)
        if known is not None:
            ET.SubElement(x, f"{{{UPDATE}}}photo").text = hashlib.sha1(  # noqa: S324 - XEP-0153
                known[1]).hexdigest()

    def on_contact_items(self, conn: Session, el: ET.Element, payload: ET.Element,
                         to: JID | None) -> Iq:
        """A pubsub items get on a contact's JID: their picture's data or metadata."""
        items = payload.find(f"{{{PUBSUB}}}items")
        node = items.get("node", "") if items is not None else ""
        if payload.tag != f"{{{PUBSUB}}}pubsub" or node not in (DATA, METADATA):
            raise XmppError("feature-not-implemented", "a contact has only avatar nodes")
        known = self._of_contact(conn, to)
        if known is None:
            raise XmppError("item-not-found", "no picture of this contact is known")
        reply = new_iq("result", el.get("id", ""))
        out = ET.SubElement(ET.SubElement(reply.xml, f"{{{PUBSUB}}}pubsub"),
                            f"{{{PUBSUB}}}items", {"node": node})
        sha = hashlib.sha1(known[1]).hexdigest()  # noqa: S324 - XEP-0084 names it so
        item = ET.SubElement(out, f"{{{PUBSUB}}}item", {"id": sha})
        item.append(_data(known[1]) if node == DATA else _metadata(sha, *known))
        return reply

    def on_contact_avatar(self, event: ContactAvatarChanged) -> None:
        """A contact's new picture: their presence again, with its hash, and an XEP-0084
        metadata event from their JID, to each available client of the identity."""
        if self.iq is None:
            return
        frm = self.iq.domains.contact(event.sender)
        known = self.pep.service.contact_presence(event.to, event.sender)
        for conn in self.pep.sessions.available(event.to):
            presence = self.iq.gateway.roster.presence(conn, frm, "")
            conn.send(presence if known is None else shown(presence, known))
            conn.send(_event(conn, frm, event.sha1, event.media_type, event.size))

    def on_login(self, conn: Session) -> None:
        """A client came online: the metadata event of each contact's picture known, as a
        server sends a PEP node's last item to a client with +notify."""
        if self.iq is None or conn.owner is None:
            return
        for contact in self.pep.service.contacts(conn.owner.address):
            known = self.pep.service.contact_avatar(conn.owner.address, contact.address)
            if known is not None:
                sha = hashlib.sha1(known[1]).hexdigest()  # noqa: S324 - XEP-0084
                conn.send(_event(conn, self.iq.domains.contact(contact.address), sha,
                                 known[0], len(known[1])))


def _event(conn: Session, frm: str, sha: str, mtype: str, size: int) -> ET.Element:
    """An XEP-0084 metadata event from a contact's bare JID."""
    msg = ET.Element("{jabber:client}message", {
        "from": frm, "to": conn.jid.full, "type": "headline", "id": sha[:16]})
    items = ET.SubElement(ET.SubElement(msg, f"{{{EVENT}}}event"), f"{{{EVENT}}}items",
                          {"node": METADATA})
    item = ET.SubElement(items, f"{{{EVENT}}}item", {"id": sha})
    ET.SubElement(ET.SubElement(item, f"{{{METADATA}}}metadata"), f"{{{METADATA}}}info",
                  {"id": sha, "bytes": str(size), "type": mtype})
    return msg


def _data(data: bytes) -> ET.Element:
    element = ET.Element(f"{{{DATA}}}data")
    element.text = base64.b64encode(data).decode()
    return element


def _metadata(sha: str, mtype: str, data: bytes) -> ET.Element:
    metadata = ET.Element(f"{{{METADATA}}}metadata")
    ET.SubElement(metadata, f"{{{METADATA}}}info",
                  {"id": sha, "bytes": str(len(data)), "type": mtype})
    return metadata

