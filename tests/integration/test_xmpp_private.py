"""Private XML storage (XEP-0049), which profanity asks for at every login.

Regression: the listener answered profanity's bookmark request
(``<query xmlns="jabber:iq:private"><storage xmlns="storage:bookmarks"/>``) with
service-unavailable, and profanity logged "IQ error received" on each login.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient

PRIVATE = "{jabber:iq:private}"
BOOKMARKS = "{storage:bookmarks}"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    service = FakeService()
    service.add_user("alice", "alice-pw")
    service.add_user("bob", "bob-pw")
    srv = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await srv.start()
    yield srv
    await srv.close()


async def login(server: C2SServer, user: str) -> SlixClient:
    client = await SlixClient(f"{user}@localhost/t", f"{user}-pw", server.cert_path
                              ).connect(server.port)
    assert client.started.is_set()
    return client


async def private(client: SlixClient, itype: str, *children: ET.Element) -> Any:
    iq = client.xmpp.make_iq_get() if itype == "get" else client.xmpp.make_iq_set()
    query = ET.SubElement(iq.xml, PRIVATE + "query")
    query.extend(children)
    return await iq.send(timeout=5)


async def test_bookmarks_are_empty_then_stored_per_identity(server: C2SServer) -> None:
    alice = await login(server, "alice")
    bob = await login(server, "bob")
    try:
        # what profanity sends at login: an empty answer, not an error
        reply = await private(alice, "get", ET.Element(BOOKMARKS + "storage"))
        stored = reply.xml.find(f"{PRIVATE}query/{BOOKMARKS}storage")
        assert stored is not None and len(stored) == 0

        bookmarks = ET.Element(BOOKMARKS + "storage")
        ET.SubElement(bookmarks, BOOKMARKS + "conference",
                      {"jid": "public@rooms.localhost", "autojoin": "true"})
        await private(alice, "set", bookmarks)
        reply = await private(alice, "get", ET.Element(BOOKMARKS + "storage"))
        room = reply.xml.find(f"{PRIVATE}query/{BOOKMARKS}storage/{BOOKMARKS}conference")
        assert room is not None and room.get("jid") == "public@rooms.localhost"

        # another identity sees nothing of it
        reply = await private(bob, "get", ET.Element(BOOKMARKS + "storage"))
        assert len(reply.xml.find(f"{PRIVATE}query/{BOOKMARKS}storage")) == 0
    finally:
        await alice.close()
        await bob.close()


async def test_reserved_namespaces_and_oversize_are_refused(server: C2SServer) -> None:
    alice = await login(server, "alice")
    try:
        with pytest.raises(IqError) as refused:
            await private(alice, "set", ET.Element("{jabber:client}storage"))
        assert refused.value.condition == "not-acceptable"
        big = ET.Element("{urn:example:big}data")
        big.text = "x" * (70 * 1024)
        with pytest.raises(IqError) as full:
            await private(alice, "set", big)
        assert full.value.condition == "resource-constraint"
    finally:
        await alice.close()
