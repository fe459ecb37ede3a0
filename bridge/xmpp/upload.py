"""XEP-0363 HTTP File Upload on the embedded listener, and files sent to contacts.

The server JID itself is the upload service: its disco#info shows the identity
``store/file``, the feature ``urn:xmpp:http:upload:0`` and the XEP-0128 form with
``max-file-size``; a slot request to it is answered with a PUT and a GET URL on the
daemon's local file listener (``bridge.fileserver``). A file over the limit is
``not-acceptable`` with the limit in words and in XEP-0363's ``<file-too-large/>``.

A message to a contact whose body (or XEP-0066 ``<x><url>``) is the GET URL of a
file of this identity sends the file itself (``ServiceAPI.send_file``); the URL
means nothing on the contact's machine, so it does not travel as text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from slixmpp import JID, Iq

from bridge.api import ServiceAPI, UploadRefusedError
from bridge.xmpp.errors import XmppError
from bridge.xmpp.slixfix import new_iq

if TYPE_CHECKING:
    from bridge.xmpp.server_iq import ServerIq
    from bridge.xmpp.sessions import Session

UPLOAD_NS = "urn:xmpp:http:upload:0"
OOB_NS = "jabber:x:oob"
DATA_NS = "jabber:x:data"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
MAX_SIZE_DIGITS = 12
MAX_URL = 512  # characters of a URL a client sends: ours are ~120


def oob_url(el: ET.Element) -> str:
    """The XEP-0066 URL of a message, "" if none."""
    return (el.findtext(f"{{{OOB_NS}}}x/{{{OOB_NS}}}url") or "").strip()


class Upload:
    def __init__(self, service: ServiceAPI) -> None:
        self.service = service

    def install(self, iq: ServerIq) -> None:
        """Offered only when the daemon runs a file listener (``upload_limit`` > 0)."""
        if self.service.upload_limit() <= 0:
            return
        iq.identities["server"].append(("store", "file", "HTTP File Upload"))
        iq.features["server"].append(UPLOAD_NS)
        info = iq.handler("server", DISCO_INFO, "get")
        assert info is not None

        def disco_info(conn: Session, el: ET.Element, payload: ET.Element,
                       to: JID | None) -> Iq:
            reply = info(conn, el, payload, to)
            reply["disco_info"].xml.append(self._form())
            return reply
        iq.register("server", DISCO_INFO, "get", disco_info)
        iq.register("server", UPLOAD_NS, "get", self._slot)

    def _form(self) -> ET.Element:
        form = ET.Element(f"{{{DATA_NS}}}x", {"type": "result"})
        for var, value, ftype in (("FORM_TYPE", UPLOAD_NS, "hidden"),
                                  ("max-file-size", str(self.service.upload_limit()), "")):
            field = ET.SubElement(form, f"{{{DATA_NS}}}field", {"var": var})
            if ftype:
                field.set("type", ftype)
            ET.SubElement(field, f"{{{DATA_NS}}}value").text = value
        return form

    def _slot(self, conn: Session, el: ET.Element, payload: ET.Element,
              to: JID | None) -> Iq:
        assert conn.owner is not None
        if payload.tag != f"{{{UPLOAD_NS}}}request":
            raise XmppError("bad-request", "expected <request/>", "modify")
        name = payload.get("filename", "")
        size = payload.get("size", "")
        if not name or not size.isascii() or not size.isdigit() or len(size) > MAX_SIZE_DIGITS:
            raise XmppError("bad-request", "a slot request names the file and its size in bytes",
                            "modify")
        try:
            put, get = self.service.upload_slot(conn.owner.address, name[:255], int(size),
                                                payload.get("content-type", "")[:255])
        except UploadRefusedError as exc:
            if not exc.limit:
                raise XmppError("not-acceptable", str(exc), "modify") from None
            return self._too_large(el, str(exc), exc.limit)
        reply = new_iq("result", el.get("id", ""))
        slot = ET.SubElement(reply.xml, f"{{{UPLOAD_NS}}}slot")
        ET.SubElement(slot, f"{{{UPLOAD_NS}}}put", {"url": put})
        ET.SubElement(slot, f"{{{UPLOAD_NS}}}get", {"url": get})
        return reply

    @staticmethod
    def _too_large(el: ET.Element, text: str, limit: int) -> Iq:
        reply = new_iq("error", el.get("id", ""))
        error = ET.SubElement(reply.xml, "{jabber:client}error", {"type": "modify"})
        ET.SubElement(error, f"{{{STANZAS_NS}}}not-acceptable")
        ET.SubElement(error, f"{{{STANZAS_NS}}}text").text = text
        big = ET.SubElement(error, f"{{{UPLOAD_NS}}}file-too-large")
        ET.SubElement(big, f"{{{UPLOAD_NS}}}max-file-size").text = str(limit)
        return reply


def send_file(service: ServiceAPI, conn: Session, el: ET.Element, address: str,
              body: str) -> str | None:
    """The archive id of a file sent to ``address`` when the message carries the URL
    of one of the identity's files; None: an ordinary message."""
    assert conn.owner is not None
    url = oob_url(el) or body.strip()
    if not url or len(url) > MAX_URL or any(c.isspace() for c in url):
        return None
    return service.send_file(conn.owner.address, address, url, el.get("id", ""))
