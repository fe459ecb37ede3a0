"""``stanzas.chat_message`` writes a message stanza directly: the same bytes that
building it as a slixmpp ``Message`` and serialising it give, for any text, and a
document the hardened reader parses back to the same values."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bridge.xmpp import stanzas as st
from bridge.xmpp.reader import StanzaReceived, StreamReader
from bridge.xmpp.slixfix import new_message, register_stanza_plugins

TEXTS = [
    "hello",
    "",
    "a < b && c > d",
    "\"quoted\" and 'apostrophes'",
    "Zoë 🙂 ünïcödé — ok",
    "line one\nline two\ttab",
    "&amp; is already escaped once",
    "]]> is not special in text",
]


def _slixmpp(to: str, frm: str, sid: str, body: str, receipt: bool, active: bool) -> bytes:
    register_stanza_plugins()
    msg = new_message()
    msg["to"] = to
    msg["from"] = frm
    msg["type"] = "chat"
    msg["id"] = sid
    msg["body"] = body
    if receipt:
        msg["request_receipt"] = True
    if active:
        ET.SubElement(msg.xml, "{http://jabber.org/protocol/chatstates}active")
    return st.serialize(msg)


@pytest.mark.parametrize("body", TEXTS)
@pytest.mark.parametrize(("receipt", "active"), [(False, False), (True, False), (True, True)])
def test_the_same_bytes_as_slixmpp(body: str, receipt: bool, active: bool) -> None:
    to, frm, sid = "bob@localhost/phone", "abc@p2p.localhost", 'id-"1"&<2>'
    assert st.chat_message(to, frm, sid, body, request_receipt=receipt, active=active) == \
        _slixmpp(to, frm, sid, body, receipt, active)


@pytest.mark.parametrize("body", TEXTS)
def test_a_client_reads_back_what_was_written(body: str) -> None:
    reader = StreamReader()
    header = b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
    events = reader.feed(header + st.chat_message("bob@localhost/x", "a'b@p2p.localhost",
                                                  "s<1>", body, request_receipt=True))
    (stanza,) = [e.element for e in events if isinstance(e, StanzaReceived)]
    assert stanza.get("to") == "bob@localhost/x"
    assert stanza.get("from") == "a'b@p2p.localhost"
    assert stanza.get("id") == "s<1>"
    assert (stanza.findtext("{jabber:client}body") or "") == body
    assert stanza.find("{urn:xmpp:receipts}request") is not None
