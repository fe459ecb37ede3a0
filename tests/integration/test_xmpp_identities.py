"""An identity deleted or renamed while its clients are logged in (embedded listener).

Regression: only the web UI listened to ``IdentitiesChanged``; a deleted identity stayed
logged in over XMPP, and a rename never reached open sessions.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.events import IdentitiesChanged, IdentityInfo
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient

ROOM = "public@rooms.localhost"
VCARD = "{vcard-temp}"
MUC_USER = "{http://jabber.org/protocol/muc#user}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = FakeService()
    service.add_user("alice", "alice-pw", nick="Alice")
    service.add_user("bob", "bob-pw")
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await srv.start()
    yield srv
    await srv.close()


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


async def login(server: C2SServer, user: str, resource: str = "laptop") -> SlixClient:
    client = await SlixClient(f"{user}@localhost/{resource}", f"{user}-pw", server.cert_path,
                              plugins=("xep_0045", "xep_0054")).connect(server.port)
    assert client.started.is_set()
    return client


def stream_errors(client: SlixClient) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    client.xmpp.add_event_handler(
        "stream_error", lambda e: seen.append((e["condition"], e["text"])))
    return seen


async def test_a_deleted_identity_is_logged_out_with_a_reason(server: C2SServer,
                                                              service: FakeService) -> None:
    laptop, phone = await login(server, "alice"), await login(server, "alice", "phone")
    bob = await login(server, "bob")
    errors = [stream_errors(laptop), stream_errors(phone)]
    try:
        del service.identities_by_name["alice"]
        service.emit(IdentitiesChanged())
        await asyncio.wait_for(asyncio.gather(laptop.closed.wait(), phone.closed.wait()), 10)
        for seen in errors:
            assert seen == [("not-authorized", "this ParanoIM identity was deleted; "
                                               "its account no longer exists")]
        assert server.sessions.of(service.identities_by_name["bob"].address)
        assert not [s for s in server.sessions.all() if s.owner and s.owner.username == "alice"]
        # another identity's session goes on
        await bob.xmpp.plugin["xep_0199"].ping(timeout=5)
        # and the deleted one cannot log in again
        again = await SlixClient("alice@localhost/x", "alice-pw", server.cert_path
                                 ).connect(server.port, timeout=10)
        assert again.failed.is_set() and not again.started.is_set()
        await again.close()
    finally:
        for client in (laptop, phone, bob):
            await client.close()


async def test_a_rename_reaches_the_open_session(server: C2SServer,
                                                 service: FakeService) -> None:
    client = await login(server, "alice")
    try:
        muc = client.xmpp.plugin["xep_0045"]
        await muc.join_muc_wait(ROOM, "Alice", maxchars=0, timeout=10)
        room_presences: asyncio.Queue[Any] = asyncio.Queue()
        client.xmpp.add_event_handler("groupchat_presence", room_presences.put_nowait)
        alice: IdentityInfo = service.identities_by_name["alice"]
        service.identities_by_name["alice"] = replace(alice, nick="Alicia")
        service.emit(IdentitiesChanged())

        # the room: a server-side nick change, the old nick leaving with 303
        gone = await asyncio.wait_for(room_presences.get(), 10)
        assert gone["from"].full == f"{ROOM}/Alice" and gone["type"] == "unavailable"
        item = gone.xml.find(f"{MUC_USER}x/{MUC_USER}item")
        assert item is not None and item.get("nick") == "Alicia"
        assert {110, 303} <= set(gone["muc"]["status_codes"])
        back = await asyncio.wait_for(room_presences.get(), 10)
        assert back["from"].full == f"{ROOM}/Alicia" and back["type"] != "unavailable"
        assert 110 in back["muc"]["status_codes"]
        client.xmpp.send_message(mto=ROOM, mbody="renamed", mtype="groupchat")
        echo: Any = await client.next_message(lambda m: m["body"] == "renamed")
        assert echo["from"].full == f"{ROOM}/Alicia"

        # the account's own vCard
        iq = client.xmpp.make_iq_get(ito="alice@localhost")
        iq.append(ET.Element(VCARD + "vCard"))
        reply = await iq.send(timeout=5)  # type: ignore[no-untyped-call]
        assert reply.xml.findtext(f"{VCARD}vCard/{VCARD}NICKNAME") == "Alicia"
        assert reply.xml.findtext(f"{VCARD}vCard/{VCARD}FN") == "Alicia"
    finally:
        await client.close()


async def test_a_room_nick_of_ones_own_choice_is_kept(server: C2SServer,
                                                      service: FakeService) -> None:
    client = await login(server, "alice")
    try:
        await client.xmpp.plugin["xep_0045"].join_muc_wait(ROOM, "ally", maxchars=0, timeout=10)
        alice = service.identities_by_name["alice"]
        service.identities_by_name["alice"] = replace(alice, nick="Alicia")
        service.emit(IdentitiesChanged())
        client.xmpp.send_message(mto=ROOM, mbody="still ally", mtype="groupchat")
        echo: Any = await client.next_message(lambda m: m["body"] == "still ally")
        assert echo["from"].full == f"{ROOM}/ally"
        (session,) = server.sessions.all()[:1] or [None]
        assert session is not None and session.owner is not None
        assert session.owner.nick == "Alicia"
    finally:
        await client.close()
