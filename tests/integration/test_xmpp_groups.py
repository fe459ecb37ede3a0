"""Private-group rooms on groups.localhost through real sockets, over the fake
service (bridge.xmpp.groupmuc): creating, inviting, writing, removing, what arrives,
and what a client gets wrong answered with a stanza error, never a traceback."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.events import GroupChanged, GroupInfo, GroupMessageArrived
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient, make_address
from tests.integration.c2s_support import CAROL, CAROL_JID, listening, with_alice
from tests.util import wait_until

DAVE = make_address(b"dave")
ROOM = "friends@groups.localhost"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    async with listening(with_alice(FakeService()), tmp_path) as srv:
        yield srv


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


@pytest.fixture
async def client(server: C2SServer) -> AsyncIterator[SlixClient]:
    c = await SlixClient("alice@localhost/laptop", "alice-pw", server.cert_path,
                         plugins=("xep_0030", "xep_0045", "xep_0249")).connect(server.port)
    # slixmpp's MUC plugin takes errors from a room away from the "message" event
    c.xmpp.add_event_handler("groupchat_message_error", c.messages.put_nowait)
    c.xmpp.add_event_handler("message_error", c.messages.put_nowait)
    c.xmpp.add_event_handler("groupchat_direct_invite", c.messages.put_nowait)  # XEP-0249
    # and a room's presences for us (110) from the "presence" event
    c.xmpp.register_handler(Callback("room presences", StanzaPath("presence"),
                                     c.presences.put_nowait))
    yield c
    await c.close()


def _alice(service: FakeService) -> str:
    return service.identities_by_name["alice"].address


def _error(condition: str, sender: str) -> Any:
    return lambda m: (m["type"] == "error" and m["error"]["condition"] == condition
                      and m["from"].bare == sender)


async def test_create_invite_write_and_remove(client: SlixClient,
                                              service: FakeService) -> None:
    muc = client.xmpp.plugin["xep_0045"]
    await muc.join_muc_wait(ROOM, "alice", maxchars=0, timeout=10)
    [group] = service.groups(_alice(service))
    assert group.name == "friends" and group.creator == _alice(service)
    items = await client.xmpp.plugin["xep_0030"].get_items(jid="groups.localhost", timeout=5)
    assert [i[0] for i in items["disco_items"]["items"]] == [ROOM]

    muc.invite(ROOM, CAROL_JID)  # mediated
    await wait_until(lambda: CAROL in service.groups(_alice(service))[0].members, 10)
    assert await muc.get_affiliation_list(ROOM, "member") == [CAROL_JID]
    assert await muc.get_affiliation_list(ROOM, "owner") == ["alice@localhost"]
    muc.invite(ROOM, f"{DAVE}@p2p.localhost")  # not a contact
    await client.next_message(_error("not-allowed", ROOM))
    client.xmpp.plugin["xep_0249"].send_invitation(f"{DAVE}@p2p.localhost", ROOM)  # direct
    await client.next_message(_error("not-allowed", f"{DAVE}@p2p.localhost"))

    said = client.xmpp.make_message(mto=ROOM, mbody="hello group", mtype="groupchat")
    said["id"] = "g1"
    said.send()
    echo: Any = await client.next_message(lambda m: m["body"] == "hello group")
    assert echo["from"].full == f"{ROOM}/alice" and echo["type"] == "groupchat"
    await service.wait_for(lambda: service.group_sent == [
        (_alice(service), group.group, "hello group", "g1")])
    service.emit(GroupMessageArrived(_alice(service), group.group, CAROL, "hi alice", "c1", 0))
    msg: Any = await client.next_message(lambda m: m["body"] == "hi alice")
    assert msg["from"].full == f"{ROOM}/Carol [{CAROL[:6]}]" and msg["id"] == "c1"

    with pytest.raises(IqError) as refused:
        await muc.set_affiliation(ROOM, "none", jid=f"{DAVE}@p2p.localhost")
    assert refused.value.iq["error"]["condition"] == "item-not-found"
    await muc.set_affiliation(ROOM, "none", nick=f"Carol [{CAROL[:6]}]")
    assert service.groups(_alice(service))[0].members == (_alice(service),)


async def test_an_invitation_arrives_and_a_removal_closes_the_room(
        client: SlixClient, service: FakeService) -> None:
    alice = _alice(service)
    gid = "ab" * 16
    info = GroupInfo(gid, "the club", CAROL, tuple(sorted((alice, CAROL))), 2, True)
    service.group_book[(alice, gid)] = info
    service.emit(GroupChanged(alice, info, invited_by=CAROL))
    invite: Any = await client.next_message(
        lambda m: m.xml.find("{jabber:x:conference}x") is not None)
    room = invite.xml.find("{jabber:x:conference}x").get("jid")
    assert room == f"the-club-{gid[:8]}@groups.localhost"
    assert invite["from"].bare == CAROL_JID
    await client.xmpp.plugin["xep_0045"].join_muc_wait(room, "alice", maxchars=0, timeout=10)
    with pytest.raises(IqError) as refused:  # only the creator removes
        await client.xmpp.plugin["xep_0045"].set_affiliation(room, "none", jid=CAROL_JID)
    assert refused.value.iq["error"]["condition"] == "not-allowed"

    gone = GroupInfo(gid, "the club", CAROL, (CAROL,), 3, False)
    service.group_book[(alice, gid)] = gone
    service.emit(GroupChanged(alice, gone))
    closed: Any = await client.next_presence(
        lambda p: p["type"] == "unavailable" and p["from"].full == f"{room}/alice")
    assert {110, 321} <= set(closed["muc"]["status_codes"])
    client.xmpp.send_presence(pto=f"{room}/alice")
    again: Any = await client.next_presence(lambda p: p["type"] == "error")
    assert again["error"]["condition"] == "registration-required"


@pytest.mark.parametrize(("to", "condition"), [
    ("Not A Name!@groups.localhost/alice", "jid-malformed"),  # nodeprep refuses it
    (f"{'x' * 41}@groups.localhost/alice", "not-acceptable"),
    (f"{ROOM}/", "jid-malformed"),
])
async def test_bad_joins_get_errors(client: SlixClient, to: str, condition: str) -> None:
    raw = ET.Element("{jabber:client}presence", {"to": to})
    client.xmpp.send_raw(ET.tostring(raw, encoding="unicode"))
    got: Any = await client.next_presence(lambda p: p["type"] == "error")
    assert got["error"]["condition"] == condition


async def test_messages_wait_for_the_first_client_in_the_room(
        client: SlixClient, service: FakeService) -> None:
    bodies: list[str] = []
    client.xmpp.register_handler(Callback("group bodies", StanzaPath("message@type=groupchat"),
                                          lambda m: bodies.append(str(m["body"]))))
    alice = _alice(service)
    info = service.create_group(alice, "later")
    for i in range(3):  # no client in the room yet
        service.emit(GroupMessageArrived(alice, info.group, CAROL, f"m{i}", f"c{i}",
                                         1_800_000_000_000 + i))
    await client.xmpp.plugin["xep_0030"].get_info(jid="localhost", timeout=5)  # all read
    room = "later@groups.localhost"
    await client.xmpp.plugin["xep_0045"].join_muc_wait(room, "alice", maxchars=0, timeout=10)
    got: list[Any] = [await client.next_message(lambda m, i=i: m["body"] == f"m{i}")
                      for i in range(3)]
    delays = [m.xml.find("{urn:xmpp:delay}delay") for m in got]
    assert delays[0].get("stamp") == "2027-01-15T08:00:00.000Z"
    assert all(d is not None and d.get("from") == room for d in delays)
    client.xmpp.plugin["xep_0045"].leave_muc(room, "alice")
    await client.next_presence(lambda p: p["type"] == "unavailable")
    await client.xmpp.plugin["xep_0045"].join_muc_wait(room, "alice", maxchars=0, timeout=10)
    said = client.xmpp.make_message(mto=room, mbody="sync", mtype="groupchat")
    said.send()
    await client.next_message(lambda m: m["body"] == "sync")
    assert [b for b in bodies if b] == ["m0", "m1", "m2", "sync"]  # once, not at a rejoin


async def test_an_invitation_waits_for_the_next_login(server: C2SServer,
                                                      service: FakeService) -> None:
    alice = _alice(service)
    gid = "cd" * 16
    info = GroupInfo(gid, "book club", CAROL, tuple(sorted((alice, CAROL))), 2, True)
    service.group_book[(alice, gid)] = info
    service.emit(GroupChanged(alice, info, invited_by=CAROL))  # no client online
    c = SlixClient("alice@localhost/phone", "alice-pw", server.cert_path,
                   plugins=("xep_0045", "xep_0249"))
    c.xmpp.add_event_handler("groupchat_direct_invite", c.messages.put_nowait)
    await c.connect(server.port)
    try:
        invite: Any = await c.next_message(
            lambda m: m.xml.find("{jabber:x:conference}x") is not None)
        assert invite.xml.find("{jabber:x:conference}x").get("jid") == (
            f"book-club-{gid[:8]}@groups.localhost")
    finally:
        await c.close()
