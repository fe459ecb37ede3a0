"""XEP-0085 chat states at the gateway, through real sockets, with chat states off
(the default: they stay local, exactly as before) and on (they go to the service and
come back from it to the clients online now)."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from bridge.events import ChatStateArrived, IdentityInfo, MessageArrived
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient
from tests.integration.c2s_support import CAROL, CAROL_JID, listening, with_alice

NS = "http://jabber.org/protocol/chatstates"


@pytest.fixture(params=[False, True], ids=["off", "on"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[C2SServer]:
    async with listening(with_alice(FakeService(chat_states=request.param)), tmp_path) as srv:
        yield srv


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


@pytest.fixture
def alice(service: FakeService) -> IdentityInfo:
    return service.identities_by_name["alice"]


async def _login(server: C2SServer, resource: str) -> SlixClient:
    c = SlixClient(f"alice@localhost/{resource}", "alice-pw", server.cert_path)
    # slixmpp's "message" event is for stanzas with a body; a chat state has none
    c.xmpp.register_handler(Callback("every message", StanzaPath("message"),
                                     c.messages.put_nowait))
    c.xmpp.remove_handler("IM")
    await c.connect(server.port)
    assert c.started.is_set()
    return c


@pytest.fixture
async def client(server: C2SServer) -> AsyncIterator[SlixClient]:
    c = await _login(server, "laptop")
    yield c
    await c.close()


def _send(client: SlixClient, state: str, body: str | None = None) -> None:
    msg = client.xmpp.make_message(mto=CAROL_JID, mbody=body, mtype="chat")
    msg.xml.append(ET.Element(f"{{{NS}}}{state}"))
    msg.send()


def _state_of(msg: Any) -> str | None:
    for child in msg.xml:
        if child.tag.startswith(f"{{{NS}}}"):
            return str(child.tag.rpartition("}")[2])
    return None


def _arrived(alice: IdentityInfo, text: str) -> MessageArrived:
    return MessageArrived(to=alice.address, sender=CAROL, text=text,
                          sent_at_ms=1_700_000_000_000, envelope_id=os.urandom(32),
                          receipt_wanted=False)


async def test_a_clients_chat_states(client: SlixClient, service: FakeService,
                                     alice: IdentityInfo) -> None:
    _send(client, "composing")
    _send(client, "paused")
    _send(client, "active", body="typed it")
    client.xmpp.send_message(mto=CAROL_JID, mbody="last", mtype="chat")
    await service.wait_for(lambda: len(service.sent) == 2)
    assert [s.text for s in service.sent] == ["typed it", "last"]
    if not service.chat_states:
        assert service.chat_states_sent == []  # they stay local, as they always did
        return
    # standalone states, and the one beside a body once the body has gone
    await service.wait_for(lambda: len(service.chat_states_sent) == 3)
    assert service.chat_states_sent == [(alice.address, CAROL, "composing"),
                                        (alice.address, CAROL, "paused"),
                                        (alice.address, CAROL, "active")]


async def test_a_contacts_chat_state_reaches_the_client(client: SlixClient,
                                                        service: FakeService,
                                                        alice: IdentityInfo) -> None:
    service.emit(ChatStateArrived(to=alice.address, sender=CAROL, state="composing"))
    service.emit(_arrived(alice, "hello"))
    first: Any = await client.next_message()
    if not service.chat_states:  # nothing before the message, which carries no state
        assert first["body"] == "hello" and _state_of(first) is None
        return
    assert first["from"].bare == CAROL_JID and first["type"] == "chat"
    assert _state_of(first) == "composing" and not first["body"]
    assert first.xml.find("{urn:xmpp:hints}no-store") is not None
    msg: Any = await client.next_message()
    assert msg["body"] == "hello" and _state_of(msg) == "active"  # XEP-0085 §5.1


async def test_a_chat_state_is_never_held_for_later(server: C2SServer, service: FakeService,
                                                    alice: IdentityInfo) -> None:
    service.emit(ChatStateArrived(to=alice.address, sender=CAROL, state="composing"))
    service.emit(_arrived(alice, "while you were away"))
    await asyncio.sleep(0)  # let the gateway take both events off the loop queue
    late = await _login(server, "late")
    try:
        msg: Any = await late.next_message(lambda m: m["from"].bare == CAROL_JID)
        assert msg["body"] == "while you were away"
        assert _state_of(msg) is None  # a delayed message is not a live "active"
    finally:
        await late.close()


async def test_contacts_announce_chat_states_only_when_on(client: SlixClient,
                                                          service: FakeService) -> None:
    info = await client.xmpp.plugin["xep_0030"].get_info(jid=CAROL_JID)
    assert (NS in info["disco_info"]["features"]) is service.chat_states
