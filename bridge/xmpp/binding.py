"""The bound resource of a c2s connection: binding it and holding stanzas to it.

Pure functions over elements; the connection (``stream.py``) sends what they
return and changes phase. Binding picks the full JID (the client's resource,
or a random one), the RFC 3921 session request is answered with an empty
result before and after binding, and once bound every stanza's ``from`` is
checked against the bound JID (RFC 6120 §8.1.2.1) and then stamped with it.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

from slixmpp import JID
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Iq

from bridge.xmpp import stanzas as st
from bridge.xmpp.slixfix import new_iq
from bridge.xmpp.streamerror import StreamError

_BIND = f"{{{st.BIND_NS}}}"
_SESSION = f"{{{st.SESSION_NS}}}session"
_IQ = f"{{{st.CLIENT_NS}}}iq"


def bind_request(iq: ET.Element) -> ET.Element | None:
    """The ``<bind/>`` of an IQ set, if it is one."""
    bind = iq.find(_BIND + "bind")
    return bind if iq.get("type") == "set" else None


def is_session_request(el: ET.Element) -> bool:
    """An RFC 3921 session IQ, of any type."""
    return el.tag == _IQ and el.find(_SESSION) is not None


def session_result(iq: ET.Element) -> Iq:
    # RFC 3921 session establishment: a no-op today, but libpurple always
    # sends it and gives up on an error.
    return new_iq("result", iq.get("id", ""))


def resource_jid(bare: str, bind: ET.Element) -> JID | None:
    """The full JID ``bind`` asks for under ``bare``; None if the resource is not allowed."""
    wanted = (bind.findtext(_BIND + "resource") or "").strip()
    resource = wanted or f"paranoim-{secrets.token_hex(4)}"
    try:
        jid = JID(f"{bare}/{resource}")
        if len(resource.encode()) > 1023:
            raise InvalidJID("resource too long")
    except InvalidJID:
        return None
    return jid


def bind_refused(iq: ET.Element) -> Iq:
    reply = new_iq("error", iq.get("id", ""))
    reply["error"]["type"] = "modify"
    reply["error"]["condition"] = "bad-request"
    reply["error"]["text"] = "that resource name is not allowed"
    return reply


def bind_result(iq: ET.Element, jid: JID) -> Iq:
    reply = new_iq("result", iq.get("id", ""))
    reply["bind"]["jid"] = jid.full
    return reply


def stamp_from(el: ET.Element, jid: JID) -> None:
    """Hold a bound stanza to ``jid``: a ``from`` naming anyone else ends the stream."""
    frm = el.get("from")
    if frm:
        try:
            claimed = JID(frm)
        except InvalidJID as exc:
            raise StreamError("invalid-from", "malformed from address") from exc
        if claimed.full not in (jid.full, jid.bare):
            raise StreamError("invalid-from", "from does not match the bound JID")
    el.set("from", jid.full)
