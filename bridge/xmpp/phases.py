"""The phases of c2s stream negotiation as data: what each accepts and offers.

Rules: a connection starts in PLAIN and only moves forward, PLAIN -> TLS
(STARTTLS done) -> AUTHED (SASL success) -> BOUND (resource bound, or an
XEP-0198 session resumed), or to CLOSED from anywhere. In each phase only the
elements in ``ACCEPTS`` are handled; any other ends the stream with the
condition ``refusal`` picks. Each new stream header is checked by
``check_stream_open`` and answered with the phase's ``features``. Sans-IO: the
connection (``stream.py``) does the moving.
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET

from bridge.xmpp import stanzas as st
from bridge.xmpp.reader import StreamOpened
from bridge.xmpp.sasl import MECHANISMS
from bridge.xmpp.sm import SM_NS
from bridge.xmpp.streamerror import StreamError


class Phase(enum.Enum):
    PLAIN = "plain"  # before STARTTLS
    TLS = "tls"  # encrypted, not authenticated
    AUTHED = "authed"  # authenticated, no resource yet
    BOUND = "bound"  # full JID; stanzas are routed
    CLOSED = "closed"


_TLS = f"{{{st.TLS_NS}}}"
_SASL = f"{{{st.SASL_NS}}}"
_C = f"{{{st.CLIENT_NS}}}"
STANZAS = frozenset({_C + "message", _C + "presence", _C + "iq"})

_SM = f"{{{SM_NS}}}"
SM_ELEMENTS = frozenset(_SM + name for name in ("enable", "resume", "r", "a"))

ACCEPTS: dict[Phase, frozenset[str]] = {
    Phase.PLAIN: frozenset({_TLS + "starttls"}),
    Phase.TLS: frozenset({_SASL + "auth", _SASL + "response", _SASL + "abort"}),
    Phase.AUTHED: frozenset({_C + "iq"}) | SM_ELEMENTS,
    Phase.BOUND: STANZAS | SM_ELEMENTS,
    Phase.CLOSED: frozenset(),
}


def refusal(phase: Phase, tag: str) -> StreamError:
    """The stream error for an element ``phase`` does not accept."""
    if phase is Phase.PLAIN:
        return StreamError("policy-violation", "STARTTLS is required first")
    if tag in STANZAS:
        return StreamError("not-authorized", "authenticate and bind a resource first")
    return StreamError("unsupported-stanza-type", f"unexpected element {tag}")


def check_stream_open(event: StreamOpened, domain: str) -> None:
    """Raise the stream error for a header that is not a jabber:client 1.0 stream to us."""
    if event.tag != f"{{{st.STREAM_NS}}}stream" or event.default_ns != st.CLIENT_NS:
        raise StreamError("invalid-namespace", "expected a jabber:client stream")
    version = event.attrs.get("version", "0.9")
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 1:
        raise StreamError("unsupported-version", "XMPP 1.0 streams only")
    to = event.attrs.get("to", domain).lower()
    if to != domain:
        raise StreamError("host-unknown", f"this server is {domain}")


def features(phase: Phase) -> bytes:
    """``<stream:features/>`` for a stream opened in ``phase``."""
    if phase is Phase.PLAIN:
        tls = st.element(_TLS + "starttls")
        ET.SubElement(tls, _TLS + "required")
        return st.features(tls)
    if phase is Phase.TLS:
        mechs = st.element(_SASL + "mechanisms")
        for name in MECHANISMS:
            ET.SubElement(mechs, _SASL + "mechanism").text = name
        return st.features(mechs)
    session = st.element(f"{{{st.SESSION_NS}}}session")
    ET.SubElement(session, f"{{{st.SESSION_NS}}}optional")
    return st.features(st.element(f"{{{st.BIND_NS}}}bind"), session, st.element(_SM + "sm"))
