"""XEP-0313 on the embedded listener, with slixmpp clients over real sockets.

The archive is the real one (``bridge.history`` over ``core.archive``, fed by the
events the fake service emits as the network would); the queries, paging and errors
go through the real listener. What a real daemon adds (sending across the network,
history after a restart) is in ``test_e2e_mam.py``.
"""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from bridge.events import IdentityInfo, MessageArrived
from bridge.history import archive_id
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient, make_address
from tests.integration.mam_support import MAM_NS, mam_query, query_element, stanza_id

CAROL = make_address(b"carol")
DAVE = make_address(b"dave")
CAROL_JID = f"{CAROL}@p2p.localhost"
DAVE_JID = f"{DAVE}@p2p.localhost"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = FakeService()
    for name in ("alice", "bob"):
        user = service.add_user(name, f"{name}-pw")
        service.put_contact(user.address, CAROL, "Carol")
        service.put_contact(user.address, DAVE, "Dave")
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


async def login(server: C2SServer, user: str = "alice", resource: str = "mam") -> SlixClient:
    client = await SlixClient(f"{user}@localhost/{resource}", f"{user}-pw", server.cert_path,
                              plugins=("xep_0280",)).connect(server.port)
    assert client.started.is_set(), f"{user} logged in"
    return client


def arrival(to: IdentityInfo, sender: str, text: str) -> MessageArrived:
    return MessageArrived(to=to.address, sender=sender, text=text, sent_at_ms=1_700_000_000_000,
                          envelope_id=os.urandom(32), receipt_wanted=False)


async def test_disco_announces_mam_on_the_account(server: C2SServer) -> None:
    client = await login(server)
    try:
        info: Any = await client.xmpp.plugin["xep_0030"].get_info(jid=JID("alice@localhost"))
        features = info["disco_info"]["features"]
        assert MAM_NS in features and "urn:xmpp:sid:0" in features
    finally:
        await client.close()


async def test_live_messages_carry_the_archive_id_and_pages_walk_the_archive(
        server: C2SServer, service: FakeService) -> None:
    alice = service.identities_by_name["alice"]
    client = await login(server)
    try:
        events = [arrival(alice, CAROL if n % 2 == 0 else DAVE, f"m{n}") for n in range(7)]
        live = []
        for event in events:
            service.emit(event)
            text = event.text
            msg: Any = await client.next_message(
                lambda m: m["body"] == text)  # type: ignore[index]  # noqa: B023
            live.append(stanza_id(msg))
            assert msg.xml.find("{urn:xmpp:sid:0}stanza-id").get("by") == "alice@localhost"
        assert live == [archive_id(e.envelope_id) for e in events]

        # forward, three at a time
        seen, after = [], None
        for expected_complete in (False, False, True):
            rsm = {"max": "3", **({"after": after} if after else {})}
            results, fin = await mam_query(client.xmpp, rsm=rsm)
            seen += results
            assert fin.complete is expected_complete and fin.count == 7
            assert fin.first == results[0].id and fin.last == results[-1].id
            after = fin.last
        assert [r.body for r in seen] == [e.text for e in events]
        assert [r.id for r in seen] == [r.stanza_id for r in seen] == live
        assert {r.to for r in seen} == {"alice@localhost"}
        assert all(r.stamp.endswith("Z") for r in seen)

        # backward from the end: the last page first
        results, fin = await mam_query(client.xmpp, rsm={"max": "2", "before": ""})
        assert [r.body for r in results] == ["m5", "m6"] and not fin.complete
        results, fin = await mam_query(client.xmpp, rsm={"max": "5", "before": fin.first or ""})
        assert [r.body for r in results] == ["m0", "m1", "m2", "m3", "m4"] and fin.complete

        # filters: with, after-id, ids
        results, _ = await mam_query(client.xmpp, {"with": DAVE_JID})
        assert [r.body for r in results] == ["m1", "m3", "m5"]
        assert {r.sender for r in results} == {DAVE_JID}
        results, _ = await mam_query(client.xmpp, {"after-id": live[4]})
        assert [r.body for r in results] == ["m5", "m6"]
        results, _ = await mam_query(client.xmpp, {"ids": [live[2], live[0]]})
        assert [r.body for r in results] == ["m0", "m2"]
        results, fin = await mam_query(client.xmpp, {"start": "2100-01-01T00:00:00Z"})
        assert results == [] and fin.complete and fin.count == 0
        results, _ = await mam_query(client.xmpp, {"end": "2100-01-01T00:00:00Z",
                                                   "with": "someone@elsewhere.example"})
        assert results == []
    finally:
        await client.close()


async def test_what_one_client_sends_is_archived_and_carbon_copied_with_its_id(
        server: C2SServer, service: FakeService) -> None:
    sender = await login(server, resource="laptop")
    other = await login(server, resource="phone")
    try:
        carbons: asyncio.Queue[Any] = asyncio.Queue()
        other.xmpp.add_event_handler("carbon_sent", carbons.put_nowait)
        await other.xmpp.plugin["xep_0280"].enable()
        msg = sender.xmpp.make_message(mto=CAROL_JID, mbody="from the laptop", mtype="chat")
        # a client cannot name archive ids: a stanza-id of its own is dropped
        ET.SubElement(msg.xml, "{urn:xmpp:sid:0}stanza-id", by="alice@localhost", id="forged")
        msg.send()
        carbon = await asyncio.wait_for(carbons.get(), 10)
        inner = carbon["carbon_sent"]
        assert inner["body"] == "from the laptop" and inner["id"] == msg["id"]
        assert len(carbon.xml.findall(".//{urn:xmpp:sid:0}stanza-id")) == 1
        copied = stanza_id(carbon)
        assert copied == archive_id(service.sent[0].envelope_id)

        results, _ = await mam_query(other.xmpp, {"with": CAROL_JID})
        assert [(r.body, r.id, r.sender, r.to) for r in results] == [
            ("from the laptop", copied, "alice@localhost", CAROL_JID)]
    finally:
        await sender.close()
        await other.close()


async def test_an_identity_sees_only_its_own_archive(server: C2SServer,
                                                     service: FakeService) -> None:
    alice = service.identities_by_name["alice"]
    bob = service.identities_by_name["bob"]
    service.emit(arrival(alice, CAROL, "for alice only"))
    service.emit(arrival(bob, CAROL, "for bob only"))
    await service.wait_for(lambda: service.history.archive.count(bob.address) == 1)
    alice_id = service.history.archive.entries(alice.address)[0].id
    client = await login(server, "bob")
    try:
        results, _ = await mam_query(client.xmpp)
        assert [r.body for r in results] == ["for bob only"]
        # alice's archive id means nothing in bob's archive
        with pytest.raises(IqError) as err:
            await mam_query(client.xmpp, rsm={"after": alice_id})
        assert err.value.iq["error"]["condition"] == "item-not-found"
    finally:
        await client.close()


@pytest.mark.parametrize(("form", "rsm", "condition", "text"), [
    ({"colour": "blue"}, None, "bad-request", "unknown field 'colour'"),
    ({"start": "yesterday"}, None, "bad-request", "not an XEP-0082 date-time"),
    ({"start": "2026-01-01T00:00:00"}, None, "bad-request", "no time zone"),
    ({"with": "@@"}, None, "bad-request", "not a JID"),
    (None, {"max": "-1"}, "bad-request", "whole number"),
    (None, {"max": "many"}, "bad-request", "whole number"),
    (None, {"after": "x", "before": "y"}, "bad-request", "not both"),
    (None, {"index": "3"}, "feature-not-implemented", "index"),
    (None, {"after": "no-such-id"}, "item-not-found", "no archived message"),
    ({"ids": ["nope"]}, None, "item-not-found", "no archived message"),
])
async def test_bad_queries_get_a_stanza_error(server: C2SServer, form: Any, rsm: Any,
                                              condition: str, text: str) -> None:
    client = await login(server)
    try:
        with pytest.raises(IqError) as err:
            await mam_query(client.xmpp, form, rsm)
        error = err.value.iq["error"]
        assert error["condition"] == condition and text in error["text"]
        # the stream is still fine: a good query is answered after the bad one
        _, fin = await mam_query(client.xmpp)
        assert fin.complete
    finally:
        await client.close()


async def test_a_form_of_the_wrong_type_and_the_query_form(server: C2SServer) -> None:
    client = await login(server)
    try:
        wrong = query_element({"with": CAROL_JID})
        wrong.find("{jabber:x:data}x").set("type", "form")  # type: ignore[union-attr]
        with pytest.raises(IqError) as err:
            await mam_query(client.xmpp, payload=wrong)
        assert err.value.iq["error"]["condition"] == "bad-request"
        iq = client.xmpp.make_iq_get()
        iq.append(ET.Element(f"{{{MAM_NS}}}query"))
        answer: Any = await iq.send(timeout=10)  # type: ignore[no-untyped-call]
        fields = [f.get("var") for f in answer.xml.iter("{jabber:x:data}field")]
        assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id"} <= set(fields)
    finally:
        await client.close()


async def test_a_page_of_long_messages_comes_in_parts_that_walk_the_whole_archive(
        server: C2SServer, service: FakeService) -> None:
    """80 messages of 60 KB (4.8 MB, more than the 4 MiB a client may leave unread)
    asked as one page: each answer stays within 1 MiB (sent at once, such a page could
    get a slow client cut off as "not reading"), and paging on gets all of them, in
    order, once, both ways."""
    alice = service.identities_by_name["alice"]
    texts = [f"{n:02d} " + "x" * 60_000 for n in range(80)]
    for text in texts:
        service.emit(arrival(alice, CAROL, text))
    await service.wait_for(lambda: service.history.archive.count(alice.address) == 80)
    client = await login(server)
    try:
        forward, after, answers = [], None, 0
        while True:
            results, fin = await mam_query(
                client.xmpp, rsm={"max": "80", **({"after": after} if after else {})})
            assert 0 < len(results) < 80 and sum(len(r.body) for r in results) < 1_100_000
            forward += [r.body for r in results]
            answers += 1
            if fin.complete:
                break
            assert fin.last == results[-1].id
            after = fin.last
        assert forward == texts and answers > 2

        backward: list[str] = []
        before = ""
        while True:
            results, fin = await mam_query(client.xmpp, rsm={"max": "80", "before": before})
            backward = [r.body for r in results] + backward
            if fin.complete:
                break
            assert fin.first == results[0].id
            before = fin.first or ""
        assert backward == texts
    finally:
        await client.close()
