"""XEP-0198 with a real client: slixmpp and its stream-management plugin, through a relay.

The relay (``relay_support.py``) keeps back what the listener writes and then drops
both sides, so the listener has written a message the client never read nor
acknowledged. Reconnecting, slixmpp resumes the session (``<resume previd h/>``) and
the message comes once; when the session can no longer be resumed (its wait is over)
slixmpp binds a new one, and the message comes to it, once.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.events import MessageArrived
from bridge.xmpp import C2SServer
from tests.fakes import FakeService, SlixClient, make_address
from tests.integration.relay_support import Relay
from tests.util import wait_until

CAROL = make_address(b"carol")
LOST = "written, never read " + "la " * 1000
NEXT = "for the next session " + "la " * 1000


async def _setup(tmp_path: Path, resume_timeout: float) -> tuple[C2SServer, FakeService, Relay]:
    service = FakeService()
    alice = service.add_user("alice", "alice-pw")
    service.put_contact(alice.address, CAROL, "Carol")
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls", resume_timeout=resume_timeout)
    await server.start()
    return server, service, await Relay(server.port).start()


@pytest.fixture
async def resumable(tmp_path: Path) -> AsyncIterator[tuple[C2SServer, FakeService, Relay]]:
    server, service, relay = await _setup(tmp_path, 120)
    yield server, service, relay
    await relay.close()
    await server.close()


@pytest.fixture
async def short_wait(tmp_path: Path) -> AsyncIterator[tuple[C2SServer, FakeService, Relay]]:
    server, service, relay = await _setup(tmp_path, 0.3)
    yield server, service, relay
    await relay.close()
    await server.close()


async def sm_client(relay: Relay) -> tuple[SlixClient, dict[str, asyncio.Event]]:
    client = SlixClient("alice@localhost/phone", "alice-pw", None, plugins=("xep_0198",))
    events = {name: asyncio.Event() for name in ("sm_enabled", "session_resumed",
                                                  "sm_failed")}
    for name, event in events.items():
        client.xmpp.add_event_handler(name, lambda _e, ev=event: ev.set())
    return client, events


async def _lose_one(server: C2SServer, service: FakeService, relay: Relay,
                    client: SlixClient, text: str) -> MessageArrived:
    """A message the listener writes and the client never reads; then the link dies."""
    alice = service.identities_by_name["alice"]
    event = MessageArrived(to=alice.address, sender=CAROL, text=text,
                           sent_at_ms=1_700_000_000_000, envelope_id=os.urandom(32),
                           receipt_wanted=False)
    relay.hold()
    service.emit(event)
    await relay.wait_held(len(text))  # written by the listener, held back
    assert event.envelope_id not in service.delivered_ids
    relay.cut()
    await asyncio.wait_for(client.closed.wait(), 10)
    return event


async def _only_once(client: SlixClient, text: str) -> None:
    got: Any = await client.next_message(lambda m: m["body"] == text, timeout=15)
    assert got["body"] == text
    await client.xmpp.plugin["xep_0199"].ping(timeout=10)  # everything sent before is in
    rest = []
    while not client.messages.empty():
        rest.append(client.messages.get_nowait())
    assert [m for m in rest if m["body"] == text] == [], "shown once"


async def test_slixmpp_resumes_and_gets_the_message_once(
        resumable: tuple[C2SServer, FakeService, Relay], tmp_path: Path) -> None:
    server, service, relay = resumable
    client, events = await sm_client(relay)
    client.xmpp.ca_certs = server.cert_path
    await client.connect(relay.port)
    try:
        await asyncio.wait_for(events["sm_enabled"].wait(), 10)
        event = await _lose_one(server, service, relay, client, LOST)
        await wait_until(lambda: len(server.resumable) == 1, 10, interval=0.01,
                         message="the session waiting to be resumed")

        client.closed.clear()
        client.xmpp.connect("127.0.0.1", relay.port)
        await asyncio.wait_for(events["session_resumed"].wait(), 15)
        assert not events["sm_failed"].is_set()
        await _only_once(client, LOST)
        await wait_until(lambda: event.envelope_id in service.delivered_ids, 10,
                         interval=0.01, message="delivered once slixmpp acknowledged it")
        assert service.delivered_ids.count(event.envelope_id) == 1
        assert relay.connections == 2
    finally:
        await client.close()


async def test_slixmpp_not_resumed_in_time_gets_it_in_its_new_session(
        short_wait: tuple[C2SServer, FakeService, Relay]) -> None:
    server, service, relay = short_wait
    client, events = await sm_client(relay)
    client.xmpp.ca_certs = server.cert_path
    await client.connect(relay.port)
    try:
        await asyncio.wait_for(events["sm_enabled"].wait(), 10)
        event = await _lose_one(server, service, relay, client, NEXT)
        await wait_until(lambda: len(server.gateway.delivery.offline) == 1, 10, interval=0.01,
                         message="the wait over: the message held for the next session")
        assert event.envelope_id not in service.delivered_ids

        client.started.clear()
        client.closed.clear()
        client.xmpp.connect("127.0.0.1", relay.port)
        await asyncio.wait_for(events["sm_failed"].wait(), 15)  # nothing left to resume
        await asyncio.wait_for(client.started.wait(), 15)  # bound anew, presence sent
        await _only_once(client, NEXT)
        await wait_until(lambda: event.envelope_id in service.delivered_ids, 10,
                         interval=0.01, message="delivered in the new session")
    finally:
        await client.close()
