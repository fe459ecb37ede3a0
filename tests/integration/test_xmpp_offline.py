"""What waits for a client that is offline is bounded, and never dropped silently.

Regression: the queue was a ``deque(maxlen=1000)`` that forgot the oldest messages
without a word. Now what does not fit is refused, counted, logged, and the person
is told at login; the service never hears ``delivered`` for it (a persistent
store shows it again after a restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.events import IdentityInfo, MessageArrived
from bridge.xmpp import C2SServer
from bridge.xmpp.offline import MAX_EVENTS, OVERHEAD, OfflineQueues
from tests.fakes import FakeService, SlixClient
from tests.integration.c2s_support import CAROL, listening, with_alice


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[C2SServer]:
    async with listening(with_alice(FakeService()), tmp_path) as srv:
        yield srv


@pytest.fixture
def service(server: C2SServer) -> FakeService:
    assert isinstance(server.service, FakeService)
    return server.service


def arrived(alice: IdentityInfo, text: str, n: int) -> MessageArrived:
    return MessageArrived(to=alice.address, sender=CAROL, text=text,
                          sent_at_ms=1_700_000_000_000 + n, envelope_id=os.urandom(32),
                          receipt_wanted=False)


async def held(server: C2SServer, count: int) -> None:
    """Wait until the gateway has taken ``count`` events off the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while len(server.gateway.delivery.offline) < count:
        assert loop.time() < deadline, "events not held"
        await asyncio.sleep(0.01)


async def login(server: C2SServer) -> SlixClient:
    client = await SlixClient("alice@localhost/late", "alice-pw", server.cert_path
                              ).connect(server.port)
    assert client.started.is_set()
    return client


async def test_past_the_count_newer_messages_are_refused_and_the_user_told(
        server: C2SServer, service: FakeService, caplog: pytest.LogCaptureFixture) -> None:
    alice = service.identities_by_name["alice"]
    events = [arrived(alice, f"away #{n}", n) for n in range(MAX_EVENTS + 2)]
    with caplog.at_level(logging.WARNING, "bridge.xmpp.offline"):
        for event in events:
            service.emit(event)
        await held(server, MAX_EVENTS)
        client = await login(server)
    try:
        notice: Any = await client.next_message(
            lambda m: m["from"].bare == "paranoim@localhost", timeout=30)
        assert notice["body"].startswith("2 messages arrived while none of your clients was "
                                         "online and could not be kept")
        assert f"at most {MAX_EVENTS} messages" in notice["body"]
        await service.wait_for(lambda: len(service.delivered_ids) == MAX_EVENTS, 30)
    finally:
        await client.close()
    shown = {e.envelope_id for e in events[:MAX_EVENTS]}
    assert set(service.delivered_ids) == shown, "the oldest are kept and shown"
    for event in events[MAX_EVENTS:]:
        assert event.envelope_id not in service.delivered_ids, "never reported delivered"
    logged = [r.getMessage() for r in caplog.records]
    assert any("is full" in line for line in logged)
    assert any("2 messages" in line and "were not kept" in line for line in logged)


async def test_past_the_byte_budget_a_message_is_refused(
        server: C2SServer, service: FakeService) -> None:
    server.gateway.delivery.offline = OfflineQueues(max_events=100,
                                                    max_bytes=2 * OVERHEAD + 2000)
    alice = service.identities_by_name["alice"]
    small, big, after = (arrived(alice, "a" * 1000, 0), arrived(alice, "b" * 5000, 1),
                         arrived(alice, "c" * 900, 2))
    for event in (small, big, after):
        service.emit(event)
    await held(server, 2)
    client = await login(server)
    try:
        notice: Any = await client.next_message(
            lambda m: m["from"].bare == "paranoim@localhost")
        assert notice["body"].startswith("1 message arrived")
        await service.wait_for(lambda: len(service.delivered_ids) == 2)
        assert set(service.delivered_ids) == {small.envelope_id, after.envelope_id}
        # nothing more is said at the next login: the count starts again
        second = await SlixClient("alice@localhost/second", "alice-pw", server.cert_path
                                  ).connect(server.port)
        await second.xmpp.plugin["xep_0199"].ping(timeout=5)
        assert second.messages.empty()
        await second.close()
    finally:
        await client.close()
