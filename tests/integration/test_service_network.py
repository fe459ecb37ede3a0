"""Two services on two real nodes peered over loopback: messages cross the real
gossip network; an announced direct endpoint (kkv-style) is used first, and a
dead one falls back to gossip."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bridge.events import ContactsChanged, MessageArrived
from bridge.net.kkv import KkvSettings, add_kkv_routes
from bridge.net.kkv_client import DirectDeliveryError, deliver_direct
from bridge.net.node import Node
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from tests.gossip_support import fast_config
from tests.integration.test_service import Inbox

BITS = 6


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


class Peer:
    def __init__(self, tmp: Path, pool: WorkerPool, bootstrap: list[str], kkv: bool) -> None:
        self.node = Node(fast_config(base_bits=BITS, bootstrap=bootstrap))
        self.kkv = add_kkv_routes(self.node.http_app, settings=KkvSettings(
            envelope_base_bits=BITS, pow_bits=8)) if kkv else None
        self.service = Service(Keystore(tmp), self.node, pool, base_bits=BITS)
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.node.start()
        if self.kkv is not None:
            self.kkv.inbox.on_envelope(self._from_inbox)
            self.service.outbox.endpoint = f"http://127.0.0.1:{self.node.port}"
        self.session = aiohttp.ClientSession()
        pool = self.service.pool

        async def direct(endpoint: str, raw: bytes) -> None:
            assert self.session is not None
            await deliver_direct(self.session, endpoint, raw, solver=pool.solve_pow, timeout=5)

        self.service.outbox.direct = direct
        await self.service.start()

    async def _from_inbox(self, raw: bytes) -> None:
        await self.node.publish(raw)

    async def stop(self) -> None:
        await self.service.stop()
        if self.session:
            await self.session.close()
        await self.node.stop()


async def test_messages_cross_the_network_and_use_direct_delivery(
    tmp_path: Path, pool: WorkerPool
) -> None:
    a = Peer(tmp_path / "a", pool, [], kkv=False)
    await a.start()
    b = Peer(tmp_path / "b", pool, [f"127.0.0.1:{a.node.port}"], kkv=True)
    await b.start()
    try:
        await a.node.wait_for(lambda: len(a.node.peers()) == 1, 10)
        alice = await a.service.create_identity("Alice")
        bob = await b.service.create_identity("Bob")
        a.service.add_contact(alice.address, b.service.invite_link(bob.address))
        b.service.add_contact(bob.address, alice.address, "alice")
        a_in, b_in = Inbox(a.service), Inbox(b.service)

        # Bob's announcement (with his direct endpoint) reaches Alice by gossip
        def knows_endpoint() -> bool:
            c = a.service.book.find(a.service.ids.rec(alice.address), bob.address)
            return bool(c and c.endpoint)

        await a.node.wait_for(knows_endpoint, 15)

        env_id = await a.service.send_message(alice.address, bob.address, "direct hello")
        msg = await b_in.wait(MessageArrived, 15)
        assert msg.text == "direct hello" and msg.envelope_id == env_id
        assert a.service.outbox.direct_stats == {"direct": 1, "fallback": 0}

        # Alice -> Bob by gossip when the endpoint is dead
        c = a.service.book.find(a.service.ids.rec(alice.address), bob.address)
        assert c is not None
        c.endpoint = "http://127.0.0.1:9"  # nothing listens on the discard port
        await a.service.send_message(alice.address, bob.address, "by gossip")
        assert (await b_in.wait(MessageArrived, 15)).text == "by gossip"
        assert a.service.outbox.direct_stats["fallback"] == 1
        assert any("direct delivery failed" in e for e in a.service.health().recent_errors)

        # and back
        await b.service.send_message(bob.address, alice.address, "reply over gossip")
        assert (await a_in.wait(MessageArrived, 15)).text == "reply over gossip"
        assert not [e for e in b_in.events if isinstance(e, ContactsChanged)
                    and e.contact and e.contact.state.value == "pending_in"]
    finally:
        await b.stop()
        await a.stop()


async def test_direct_delivery_error_is_readable(pool: WorkerPool) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DirectDeliveryError) as info:
            await deliver_direct(session, "http://127.0.0.1:9", b"x" * 400,
                                 solver=pool.solve_pow, timeout=3)
    assert "127.0.0.1" in str(info.value) or "connect" in str(info.value).lower()
