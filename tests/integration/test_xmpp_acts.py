"""Corrections, reactions, retractions, replies and read markers at the gateway,
through real sockets (the service faked): what a client sends becomes the service
call naming the same message id, bounded first; what the network brings becomes the
XEP element for the client; presence with the feature on and off."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.core.acts import Act, ActKind
from bridge.events import IdentityInfo, MessageArrived, PresenceArrived
from bridge.xmpp import C2SServer
from bridge.xmpp.acts import quoted_prefix
from tests.fakes import FakeService, SlixClient
from tests.integration.c2s_support import CAROL, CAROL_JID, listening, with_alice

REACTIONS = "urn:xmpp:reactions:0"


@pytest.fixture(params=[False, True], ids=["off", "on"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = with_alice(FakeService(markers=request.param, presence=request.param))
    async with listening(service, tmp_path) as srv:
        yield srv


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


@pytest.fixture
def alice(service: FakeService) -> IdentityInfo:
    return service.identities_by_name["alice"]


@pytest.fixture
async def client(server: C2SServer) -> AsyncIterator[SlixClient]:
    c = SlixClient("alice@localhost/laptop", "alice-pw", server.cert_path)
    c.xmpp.register_handler(Callback("every message", StanzaPath("message"),
                                     c.messages.put_nowait))
    c.xmpp.remove_handler("IM")
    await c.connect(server.port)
    yield c
    await c.close()


def _stanza(client: SlixClient, *children: ET.Element, body: str | None = None,
            ident: str = "") -> None:
    msg = client.xmpp.make_message(mto=CAROL_JID, mbody=body, mtype="chat")
    if ident:
        msg["id"] = ident
    for child in children:
        msg.xml.append(child)
    msg.send()


def _of(stanza: object) -> Any:
    return stanza


def _reactions(ref: str, *values: str) -> ET.Element:
    el = ET.Element(f"{{{REACTIONS}}}reactions", id=ref)
    for v in values:
        ET.SubElement(el, f"{{{REACTIONS}}}reaction").text = v
    return el


async def test_a_clients_acts_name_the_message(client: SlixClient, service: FakeService,
                                               alice: IdentityInfo) -> None:
    _stanza(client, body="first", ident="m-1")
    service.emit(MessageArrived(to=alice.address, sender=CAROL, text="hi", sent_at_ms=1,
                                envelope_id=os.urandom(32), receipt_wanted=False,
                                message_id="c-1"))
    await service.wait_for(lambda: len(service.sent) == 1)
    _stanza(client, ET.Element("{urn:xmpp:message-correct:0}replace", id="m-1"), body="fixed",
            ident="m-2")
    _stanza(client, _reactions("m-1", "👍", " ", "👍", "🎉"))  # blank and repeated: once
    _stanza(client, ET.Element("{urn:xmpp:message-retract:1}retract", id="m-1"),
            body="fallback text")
    fastened = ET.Element("{urn:xmpp:fasten:0}apply-to", id="c-1")  # XEP-0424 before 0.4
    ET.SubElement(fastened, "{urn:xmpp:message-retract:0}retract")
    _stanza(client, fastened)
    _stanza(client, ET.Element("{urn:xmpp:chat-markers:0}displayed", id="c-1"))
    _stanza(client, ET.Element("{urn:xmpp:reply:0}reply", id="c-1", to=CAROL_JID),
            body="> quoted\nanswer", ident="m-3")
    _stanza(client, _reactions("never-written", "👍"))
    error: Any = await client.next_message(lambda m: _of(m)["type"] == "error")
    assert "no message with id" in error["error"]["text"]
    await service.wait_for(lambda: len(service.sent) == 2)
    assert service.sent[1].text == "> quoted\nanswer"  # a reply is a message
    want = [(alice.address, CAROL, Act(ActKind.CORRECTION, "m-1"), "fixed"),
            (alice.address, CAROL, Act(ActKind.REACTION, "m-1", ("👍", "🎉")), ""),
            (alice.address, CAROL, Act(ActKind.RETRACTION, "m-1"), ""),
            (alice.address, CAROL, Act(ActKind.RETRACTION, "c-1"), "")]
    if service.markers:  # read markers only when turned on; else they stay local
        want.append((alice.address, CAROL, Act(ActKind.DISPLAYED, "c-1"), ""))
    want.append((alice.address, CAROL, Act(ActKind.REPLY, "c-1", to_recipient=True),
                 "> quoted\nanswer"))
    assert service.acts_sent == want


async def test_hostile_acts_are_refused_before_the_service(client: SlixClient,
                                                           service: FakeService) -> None:
    _stanza(client, _reactions("m-1", "x" * 10_000))
    _stanza(client, _reactions("m-1", *(chr(0x1F600 + i) for i in range(17))))
    _stanza(client, _reactions("i" * 65, "👍"))
    _stanza(client, ET.Element("{urn:xmpp:message-correct:0}replace", id="m-1"))  # no text
    _stanza(client, ET.Element("{urn:xmpp:message-retract:1}retract"))  # no id
    errors: list[Any] = [await client.next_message(lambda m: _of(m)["type"] == "error")
                         for _ in range(5)]
    assert [e["error"]["condition"] for e in errors] == [
        "not-acceptable", "not-acceptable", "not-acceptable", "bad-request", "bad-request"]
    assert service.acts_sent == []


async def test_acts_from_the_network_become_xep_elements(client: SlixClient,
                                                         service: FakeService,
                                                         alice: IdentityInfo) -> None:
    def arrive(act: Act, text: str = "") -> None:
        service.emit(MessageArrived(to=alice.address, sender=CAROL, text=text,
                                    sent_at_ms=1, envelope_id=os.urandom(32),
                                    receipt_wanted=False, message_id="c-9", act=act))

    arrive(Act(ActKind.CORRECTION, "c-1"), "fixed")
    arrive(Act(ActKind.REACTION, "m-1", ("👍",)))
    arrive(Act(ActKind.RETRACTION, "c-1"))
    arrive(Act(ActKind.REPLY, "m-1", to_recipient=True), "> Alice:\n> are you in?\nyes")
    arrive(Act(ActKind.DISPLAYED, "m-1"))
    got: list[Any] = [await client.next_message(lambda m: _of(m)["from"].bare == CAROL_JID)
                      for _ in range(5)]
    fixed, reacted, retracted, replied, marked = (m.xml for m in got)
    assert fixed.find("{urn:xmpp:message-correct:0}replace").get("id") == "c-1"
    assert fixed.findtext("{jabber:client}body") == "fixed"
    reactions = reacted.find(f"{{{REACTIONS}}}reactions")
    assert reactions.get("id") == "m-1"
    assert [r.text for r in reactions] == ["👍"] and reacted.find("{jabber:client}body") is None
    assert retracted.find("{urn:xmpp:message-retract:1}retract").get("id") == "c-1"
    old = retracted.find("{urn:xmpp:fasten:0}apply-to")  # for clients before XEP-0424 0.4
    assert old.get("id") == "c-1" and old.find("{urn:xmpp:message-retract:0}retract") is not None
    reply = replied.find("{urn:xmpp:reply:0}reply")
    assert (reply.get("id"), reply.get("to")) == ("m-1", "alice@localhost")
    fallback = replied.find("{urn:xmpp:fallback:0}fallback")  # the quote, for XEP-0428
    assert fallback.get("for") == "urn:xmpp:reply:0"
    quote = str(len("> Alice:\n> are you in?\n"))
    assert fallback.find("{urn:xmpp:fallback:0}body").attrib == {"start": "0", "end": quote}
    assert marked.find("{urn:xmpp:chat-markers:0}displayed").get("id") == "m-1"
    assert all(m["id"] == "c-9" for m in got)


def test_a_replys_quote_is_its_leading_quoted_lines() -> None:
    assert quoted_prefix("> Bob:\n> hi\nyes") == len("> Bob:\n> hi\n")
    assert quoted_prefix("yes\n> not a quote") == 0
    assert quoted_prefix("> only a quote\n") == 0 and quoted_prefix("> no end") == 0
    assert quoted_prefix("> 😀\nok") == 4  # code points, as XEP-0426 counts


async def test_presence_from_the_network(client: SlixClient, service: FakeService,
                                         alice: IdentityInfo) -> None:
    presences: list[Any] = []
    while not client.presences.empty():  # what came at login
        presences.append(client.presences.get_nowait())
    client.xmpp.add_event_handler("presence", presences.append)
    await client.xmpp.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=10)
    at_login = [p for p in presences if p["from"].bare == CAROL_JID]
    assert [p.xml.get("type") for p in at_login] == [None]  # online, as always
    service.emit(PresenceArrived(alice.address, CAROL, "away", "lunch"))
    service.emit(PresenceArrived(alice.address, CAROL, "unavailable"))
    await client.xmpp.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=10)
    later = [p for p in presences if p["from"].bare == CAROL_JID][1:]
    # the service emits these only with presence on; the gateway passes them on
    assert [(p.xml.get("type"), str(p["show"]), str(p["status"])) for p in later] == [
        (None, "away", "lunch"), ("unavailable", "", "")]
    await service.wait_for(lambda: bool(service.presences_set) or not service.presence)
    assert service.presences_set[:1] == ([(alice.address, "", "")] if service.presence
                                         else [])


async def test_archived_acts_come_back_from_mam_with_their_element(
        client: SlixClient, service: FakeService, alice: IdentityInfo) -> None:
    service.emit(MessageArrived(to=alice.address, sender=CAROL, text="fixed", sent_at_ms=1,
                                envelope_id=os.urandom(32), receipt_wanted=False,
                                message_id="c-2", act=Act(ActKind.CORRECTION, "c-1")))
    service.emit(MessageArrived(to=alice.address, sender=CAROL, text="", sent_at_ms=2,
                                envelope_id=os.urandom(32), receipt_wanted=False,
                                act=Act(ActKind.REACTION, "c-1", ("👍",))))
    await service.send_message(alice.address, CAROL, "oops", message_id="m-1")
    service.send_act(alice.address, CAROL, Act(ActKind.RETRACTION, "m-1"))
    service.emit(MessageArrived(to=alice.address, sender=CAROL, text="> oops\nwhat?",
                                sent_at_ms=3, envelope_id=os.urandom(32),
                                receipt_wanted=False, message_id="c-3",
                                act=Act(ActKind.REPLY, "m-1", to_recipient=True)))
    await client.next_message(lambda m: _of(m)["body"] == "> oops\nwhat?")  # shown live
    iq = client.xmpp.make_iq_set()
    ET.SubElement(iq.xml, "{urn:xmpp:mam:2}query", queryid="q1")
    await iq.send(timeout=10)  # type: ignore[no-untyped-call]
    results: list[Any] = []
    while not client.messages.empty():
        msg = _of(client.messages.get_nowait())
        if msg.xml.find("{urn:xmpp:mam:2}result") is not None:
            results.append(msg)
    inner = [r.xml.find(".//{jabber:client}message") for r in results]
    assert len(inner) == 4  # the reaction is not archived
    assert inner[0].find("{urn:xmpp:message-correct:0}replace").get("id") == "c-1"
    assert inner[0].findtext("{jabber:client}body") == "fixed"
    assert inner[1].findtext("{jabber:client}body") == "oops"
    assert inner[2].find("{urn:xmpp:message-retract:1}retract").get("id") == "m-1"
    assert inner[2].get("to") == CAROL_JID
    reply = inner[3].find("{urn:xmpp:reply:0}reply")
    assert (reply.get("id"), reply.get("to")) == ("m-1", "alice@localhost")
    fallback = inner[3].find("{urn:xmpp:fallback:0}fallback/{urn:xmpp:fallback:0}body")
    assert fallback.get("end") == str(len("> oops\n"))
