"""Chats, receipts, contacts, the bot and the public room, through real sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.core.errors import UserError
from bridge.events import (
    ContactsChanged,
    ContactState,
    IdentityInfo,
    MessageArrived,
    ReceiptArrived,
    RoomMessageArrived,
)
from bridge.xmpp import C2SServer
from bridge.xmpp.gateway import SENDS_IN_FLIGHT
from tests.fakes import FakeService, SlixClient, make_address
from tests.integration.c2s_support import CAROL, CAROL_JID, listening, with_alice

DAVE = make_address(b"dave")


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    async with listening(with_alice(FakeService()), tmp_path) as srv:
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
    c = await SlixClient("alice@localhost/laptop", "alice-pw", server.cert_path,
                         plugins=("xep_0184", "xep_0280", "xep_0045", "xep_0191")
                         ).connect(server.port)
    assert c.started.is_set()
    yield c
    await c.close()


def arrived(alice: IdentityInfo, text: str, receipt: bool = False, mid: str = "") -> MessageArrived:
    return MessageArrived(to=alice.address, sender=CAROL, text=text, sent_at_ms=1_700_000_000_000,
                          envelope_id=os.urandom(32), receipt_wanted=receipt, message_id=mid)


def body_is(text: str) -> Any:
    return lambda m: m["body"] == text


async def test_chat_message_reaches_the_service(client: SlixClient, service: FakeService,
                                                alice: IdentityInfo) -> None:
    msg = client.xmpp.make_message(mto=CAROL_JID, mbody="hello carol", mtype="chat")
    msg["request_receipt"] = True
    msg.send()
    await service.wait_for(lambda: len(service.sent) == 1)
    sent = service.sent[0]
    assert (sent.owner, sent.to, sent.text) == (alice.address, CAROL, "hello carol")
    assert sent.receipt and sent.message_id == msg["id"]


async def test_chat_states_stay_local(client: SlixClient, service: FakeService) -> None:
    state = client.xmpp.make_message(mto=CAROL_JID, mtype="chat")
    state.xml.append(__import__("xml.etree.ElementTree").etree.ElementTree.Element(
        "{http://jabber.org/protocol/chatstates}composing"))
    state.send()
    client.xmpp.send_message(mto=CAROL_JID, mbody="after typing", mtype="chat")
    await service.wait_for(lambda: len(service.sent) == 1)
    assert [s.text for s in service.sent] == ["after typing"]


async def test_message_from_the_network_and_receipts_both_ways(
    client: SlixClient, service: FakeService, alice: IdentityInfo
) -> None:
    event = arrived(alice, "hi alice", receipt=True, mid="carol-1")
    service.emit(event)
    msg: Any = await client.next_message(body_is("hi alice"))
    assert msg["from"].bare == CAROL_JID and msg["type"] == "chat"
    # slixmpp's XEP-0184 plugin acks it; the ack becomes an end-to-end receipt
    await service.wait_for(lambda: bool(service.receipts_sent))
    owner, to, envelope_ids, message_ids = service.receipts_sent[0]
    assert (owner, to, envelope_ids, message_ids) == (alice.address, CAROL,
                                                      [event.envelope_id], ["carol-1"])

    # a receipt from the network for something alice sent
    got = asyncio.Event()
    client.xmpp.add_event_handler("receipt_received", lambda m: got.set())
    out = client.xmpp.make_message(mto=CAROL_JID, mbody="did you get it?", mtype="chat")
    out["request_receipt"] = True
    out.send()
    await service.wait_for(lambda: len(service.sent) == 1)
    service.emit(ReceiptArrived(alice.address, CAROL, (service.sent[0].envelope_id,)))
    await asyncio.wait_for(got.wait(), 10)


async def test_each_envelope_is_delivered_once(client: SlixClient, service: FakeService,
                                               alice: IdentityInfo) -> None:
    event = arrived(alice, "only once")
    service.emit(event)
    service.emit(event)
    service.emit(arrived(alice, "next"))
    await client.next_message(body_is("only once"))
    second: Any = await client.next_message(lambda m: m["type"] == "chat")
    assert second["body"] == "next"


async def test_user_error_comes_back_as_message_error(client: SlixClient,
                                                      service: FakeService) -> None:
    service.send_error = UserError("the network is unreachable: no peers are connected")
    client.xmpp.send_message(mto=CAROL_JID, mbody="lost", mtype="chat")
    err: Any = await client.next_message(lambda m: m["type"] == "error")
    assert err["error"]["text"] == "the network is unreachable: no peers are connected"
    assert err["from"].bare == CAROL_JID

    client.xmpp.send_message(mto="not-an-address@p2p.localhost", mbody="x", mtype="chat")
    err = await client.next_message(lambda m: m["type"] == "error")
    assert err["error"]["condition"] == "jid-malformed"
    assert "56 characters" in err["error"]["text"]


async def test_slow_proof_of_work_does_not_freeze_the_client(
    client: SlixClient, service: FakeService
) -> None:
    service.send_gate = asyncio.Event()
    client.xmpp.send_message(mto=CAROL_JID, mbody="first", mtype="chat")
    client.xmpp.send_message(mto=CAROL_JID, mbody="second", mtype="chat")
    # the send is stuck in "proof of work", yet the server answers at once
    await client.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    assert service.sent == []
    service.send_gate.set()
    await service.wait_for(lambda: len(service.sent) == 2)
    assert [s.text for s in service.sent] == ["first", "second"]


async def test_a_pasted_burst_is_stamped_a_few_at_a_time_and_leaves_in_order(
    client: SlixClient, service: FakeService
) -> None:
    """A burst from one identity does not fill the worker pool ahead of everyone else:
    at most SENDS_IN_FLIGHT of its messages are being sealed and stamped at once."""
    service.send_gate = asyncio.Event()
    for n in range(3 * SENDS_IN_FLIGHT):
        client.xmpp.send_message(mto=CAROL_JID, mbody=f"line {n}", mtype="chat")
    await client.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)  # all read
    await service.wait_for(lambda: service.sends_waiting == SENDS_IN_FLIGHT)
    await client.xmpp.plugin["xep_0199"].ping(jid="localhost", timeout=5)
    assert service.sends_waiting == SENDS_IN_FLIGHT, "no more once everything was read"
    service.send_gate.set()
    await service.wait_for(lambda: len(service.sent) == 3 * SENDS_IN_FLIGHT)
    assert [s.text for s in service.sent] == [f"line {n}" for n in range(3 * SENDS_IN_FLIGHT)]
    assert service.sends_waiting == 0


async def test_two_clients_get_network_messages_and_carbons(
    server: C2SServer, client: SlixClient, service: FakeService, alice: IdentityInfo
) -> None:
    phone = await SlixClient("alice@localhost/phone", "alice-pw", server.cert_path,
                             plugins=("xep_0280",)).connect(server.port)
    try:
        await phone.xmpp.plugin["xep_0280"].enable()
        sent_carbon = asyncio.Event()
        phone.xmpp.add_event_handler(
            "carbon_sent",
            lambda m: sent_carbon.set() if m["carbon_sent"]["body"] == "from laptop" else None)
        client.xmpp.send_message(mto=CAROL_JID, mbody="from laptop", mtype="chat")
        await asyncio.wait_for(sent_carbon.wait(), 10)

        service.emit(arrived(alice, "to both"))
        await client.next_message(body_is("to both"))
        await phone.next_message(body_is("to both"))
    finally:
        await phone.close()


async def test_messages_wait_for_a_client_to_come_online(server: C2SServer,
                                                         service: FakeService,
                                                         alice: IdentityInfo) -> None:
    service.emit(arrived(alice, "while you were away"))
    await asyncio.sleep(0)  # let the gateway take the event off the loop queue
    late = await SlixClient("alice@localhost/late", "alice-pw", server.cert_path
                            ).connect(server.port)
    try:
        msg: Any = await late.next_message(body_is("while you were away"))
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None
    finally:
        await late.close()


async def test_contact_request_accept_and_roster_push(client: SlixClient,
                                                      service: FakeService,
                                                      alice: IdentityInfo) -> None:
    request = service.put_contact(alice.address, DAVE, "Dave", ContactState.PENDING_IN)
    service.emit(ContactsChanged(alice.address, contact=request))
    sub: Any = await client.next_presence(lambda p: p["type"] == "subscribe")
    assert sub["from"].full == f"{DAVE}@p2p.localhost"  # subscriptions: the bare JID
    client.xmpp.send_presence(pto=f"{DAVE}@p2p.localhost", ptype="subscribed")
    await service.wait_for(lambda: ("accept_contact", (alice.address, DAVE)) in service.calls)
    online: Any = await client.next_presence(
        lambda p: p["from"].bare == f"{DAVE}@p2p.localhost" and p["type"] == "available")
    # availability from a resource, as a real contact's: Gajim shows bare-JID presence offline
    assert online["from"].resource == "paranoim"
    assert client.xmpp.client_roster[f"{DAVE}@p2p.localhost"]["subscription"] == "both"


async def test_roster_add_and_bad_address(client: SlixClient, service: FakeService,
                                          alice: IdentityInfo) -> None:
    from slixmpp.exceptions import IqError

    new = make_address(b"erin")
    await client.xmpp.update_roster(f"{new}@p2p.localhost", name="Erin")
    assert ("add_contact", (alice.address, new, "Erin")) in service.calls
    with pytest.raises(IqError) as err:
        await client.xmpp.update_roster("nope@p2p.localhost", name="Nope")
    assert "56 characters" in err.value.iq["error"]["text"]
    await client.xmpp.del_roster_item(f"{new}@p2p.localhost")
    assert ("remove_contact", (alice.address, new)) in service.calls


async def test_blocking(client: SlixClient, service: FakeService, alice: IdentityInfo) -> None:
    await client.xmpp.plugin["xep_0191"].block([CAROL_JID])
    assert ("block_contact", (alice.address, CAROL)) in service.calls
    blocked = await client.xmpp.plugin["xep_0191"].get_blocked()
    assert {str(i["jid"]) for i in blocked["blocklist"]["items"]} == {CAROL_JID}


async def test_the_bot(client: SlixClient, service: FakeService, alice: IdentityInfo) -> None:
    def ask(text: str) -> None:
        client.xmpp.send_message(mto="paranoim@localhost", mbody=text, mtype="chat")

    def from_bot(m: Any) -> bool:
        return m["from"].bare == "paranoim@localhost"

    ask("help")
    assert "invite" in (await client.next_message(from_bot))["body"]  # type: ignore[index]
    ask("status")
    assert "stored envelopes: 7" in (await client.next_message(from_bot))["body"]  # type: ignore[index]
    ask("invite")
    link = service.invite_link(alice.address)
    assert link.startswith("paranoim:") and alice.address in link
    assert link in (await client.next_message(from_bot))["body"]  # type: ignore[index]
    frank = make_address(b"frank")
    ask(f"add {frank} Frank the friend")
    reply: Any = await client.next_message(from_bot)
    assert "Added Frank the friend" in reply["body"]
    ask("add garbage")
    reply = await client.next_message(from_bot)
    assert reply["body"].startswith("Sorry:")


async def test_public_room(client: SlixClient, service: FakeService, alice: IdentityInfo) -> None:
    muc = client.xmpp.plugin["xep_0045"]
    await muc.join_muc_wait("public@rooms.localhost", "alice", maxchars=0, timeout=10)
    client.xmpp.send_message(mto="public@rooms.localhost", mbody="hello room", mtype="groupchat")
    echo: Any = await client.next_message(lambda m: m["type"] == "groupchat" and m["body"])
    assert echo["from"].full == "public@rooms.localhost/alice"
    await service.wait_for(lambda: service.room_sent == [(alice.address, "public",
                                                          "hello room")])
    service.emit(RoomMessageArrived(alice.address, "public", DAVE, "dave", "hi all", 0,
                                    os.urandom(32)))
    msg: Any = await client.next_message(body_is("hi all"))
    assert msg["type"] == "groupchat"
    assert msg["from"].resource == f"dave [{DAVE[:6]}]"
