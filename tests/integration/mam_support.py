"""Asking the listener's XEP-0313 archive from a slixmpp client, as a client would.

``mam_query`` sends ``<iq type='set'><query xmlns='urn:xmpp:mam:2'>`` with an optional
form and result set, and returns the result messages that came for its queryid (in
the order they came) and the ``<fin/>``. Result messages are collected by a handler
registered before the query is sent: the listener sends them before the IQ result on
the same stream, so all of them have been handled when the IQ result is.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

MAM_NS = "urn:xmpp:mam:2"
RSM_NS = "http://jabber.org/protocol/rsm"
DATA_NS = "jabber:x:data"
FORWARD_NS = "urn:xmpp:forward:0"
SID_NS = "urn:xmpp:sid:0"
DELAY_NS = "urn:xmpp:delay"
C = "{jabber:client}"


@dataclass(frozen=True)
class Result:
    id: str  # the archive id (result@id)
    body: str
    sender: str  # bare JID of the inner message's from
    to: str
    stanza_id: str  # the inner message's XEP-0359 stanza-id
    stamp: str  # the forwarded delay's stamp


@dataclass(frozen=True)
class Fin:
    complete: bool
    first: str | None
    last: str | None
    count: int | None


def query_element(form: dict[str, str | list[str]] | None = None,
                  rsm: dict[str, str] | None = None, query_id: str = "") -> ET.Element:
    query = ET.Element(f"{{{MAM_NS}}}query", {"queryid": query_id} if query_id else {})
    if form is not None:
        x = ET.SubElement(query, f"{{{DATA_NS}}}x", {"type": "submit"})
        for var, value in {"FORM_TYPE": MAM_NS, **form}.items():
            field = ET.SubElement(x, f"{{{DATA_NS}}}field", {"var": var})
            for v in value if isinstance(value, list) else [value]:
                ET.SubElement(field, f"{{{DATA_NS}}}value").text = v
    if rsm is not None:
        rsm_el = ET.SubElement(query, f"{{{RSM_NS}}}set")
        for name, value in rsm.items():
            ET.SubElement(rsm_el, f"{{{RSM_NS}}}{name}").text = value or None
    return query


def _result(msg: Any) -> Result:
    result = msg.xml.find(f"{{{MAM_NS}}}result")
    assert result is not None
    forwarded = result.find(f"{{{FORWARD_NS}}}forwarded")
    assert forwarded is not None
    inner = forwarded.find(C + "message")
    assert inner is not None, "a result forwards one jabber:client message"
    delay = forwarded.find(f"{{{DELAY_NS}}}delay")
    sid = inner.find(f"{{{SID_NS}}}stanza-id")
    return Result(result.get("id", ""), inner.findtext(C + "body") or "",
                  slixmpp.JID(inner.get("from", "")).bare, slixmpp.JID(inner.get("to", "")).bare,
                  sid.get("id", "") if sid is not None else "",
                  delay.get("stamp", "") if delay is not None else "")


async def mam_query(client: slixmpp.ClientXMPP, form: dict[str, str | list[str]] | None = None,
                    rsm: dict[str, str] | None = None, *, timeout: float = 20.0,
                    payload: ET.Element | None = None) -> tuple[list[Result], Fin]:
    """One query; raises slixmpp's ``IqError`` for an error answer."""
    query_id = secrets.token_hex(6)
    payload = payload if payload is not None else query_element(form, rsm, query_id)
    got: list[Any] = []

    def collect(msg: Any) -> None:
        result = msg.xml.find(f"{{{MAM_NS}}}result")
        if result is not None and result.get("queryid") == query_id:
            got.append(msg)

    name = f"mam results {query_id}"
    client.register_handler(Callback(
        name, MatchXPath(f"{{jabber:client}}message/{{{MAM_NS}}}result"), collect))
    try:
        iq = client.make_iq_set()
        iq.append(payload)
        answer = await iq.send(timeout=timeout)  # type: ignore[no-untyped-call]
    finally:
        client.remove_handler(name)
    fin = answer.xml.find(f"{{{MAM_NS}}}fin")
    assert fin is not None, "the answer carries <fin/>"
    rsm_el = fin.find(f"{{{RSM_NS}}}set")
    first = last = None
    count = None
    if rsm_el is not None:
        first = rsm_el.findtext(f"{{{RSM_NS}}}first")
        last = rsm_el.findtext(f"{{{RSM_NS}}}last")
        count_text = rsm_el.findtext(f"{{{RSM_NS}}}count")
        count = int(count_text) if count_text is not None else None
    return [_result(m) for m in got], Fin(fin.get("complete") == "true", first, last, count)


def stanza_id(msg: slixmpp.Message) -> str:
    """The XEP-0359 stanza-id a message (or a carbon's inner message) carries."""
    sid = msg.xml.find(f".//{{{SID_NS}}}stanza-id")
    return sid.get("id", "") if sid is not None else ""
