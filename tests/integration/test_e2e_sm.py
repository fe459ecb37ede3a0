"""XEP-0198 end to end: two real daemons; Bob's slixmpp client (with its stream
management plugin) reaches daemon B through a relay that can swallow what B writes.

Alice on A writes to Bob across the P2P link. B writes the message to Bob's client,
the relay keeps it back and drops the link: written, never read. Resumed, Bob gets it,
once. And when B stops before Bob acknowledged it, B has not recorded it as shown: after
B starts again, Bob's next session gets it from the network (the key file would
otherwise have said "shown" and it would have been lost).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.integration.e2e_support import Account, Client, Daemon, pair_from_template, start_pair
from tests.integration.relay_support import Relay

pytestmark = pytest.mark.slow
_unique = itertools.count(1)


class SmClient(Client):
    """An e2e client with XEP-0198 on, connecting through ``port`` (a relay)."""

    def __init__(self, account: Account, daemon: Daemon, port: int) -> None:
        super().__init__(account, daemon, "phone")
        self.register_plugin("xep_0198")
        self.port = port
        self.sm_events = {name: asyncio.Event() for name in ("sm_enabled", "session_resumed")}
        for name, event in self.sm_events.items():
            self.add_event_handler(name, lambda _e, ev=event: ev.set())

    async def login(self, timeout: float = 20.0) -> SmClient:
        self._closed.clear()
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self._session.wait(), timeout)
        await asyncio.wait_for(self.sm_events["sm_enabled"].wait(), timeout)
        return self

    async def resume(self, timeout: float = 20.0) -> None:
        self._closed.clear()
        self.connect("127.0.0.1", self.port)
        await asyncio.wait_for(self.sm_events["session_resumed"].wait(), timeout)


@pytest.fixture
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("sm"))
    try:
        start_pair(a, b)
        yield a, b
    finally:
        b.stop()
        a.stop()


@pytest.fixture
async def alice(pair: tuple[Daemon, Daemon]) -> AsyncIterator[Client]:
    a, _ = pair
    client = await Client(a.accounts["Alice"], a, "desk").login()
    try:
        await client.wait(client.peers, 30, "A linked to B")
        yield client
    finally:
        await client.close()


def _long(head: str) -> str:
    """A message far longer than any other stanza B may write meanwhile."""
    return f"{head} " + "la " * 1500


async def _swallowed(alice: Client, bob: SmClient, relay: Relay, text: str) -> None:
    """Alice's message written by B to Bob's client and never read by it."""
    relay.hold()
    alice.chat(bob.account.contact_jid, text)
    await relay.wait_held(len(text))  # B wrote the message itself, not just a presence
    relay.cut()
    await asyncio.wait_for(bob._closed.wait(), 10)
    assert bob.bodies(alice.account.contact_jid).count(text) == 0


async def test_bob_resumes_and_gets_what_the_dropped_link_swallowed_once(
        pair: tuple[Daemon, Daemon], alice: Client) -> None:
    _, b = pair
    relay = await Relay(b.port("xmpp")).start()
    bob = await SmClient(b.accounts["Bob"], b, relay.port).login()
    try:
        text = _long(f"over a dying link {time.monotonic_ns():x}-{next(_unique)}")
        await _swallowed(alice, bob, relay, text)
        await bob.resume()
        got: Any = await bob.wait_body(alice.account.contact_jid, text, 30)
        await bob.ping_server()
        assert bob.bodies(alice.account.contact_jid).count(text) == 1
        assert got["type"] == "chat" and bob.errors() == []
    finally:
        await bob.close()
        await relay.close()


async def test_a_message_never_acknowledged_is_shown_again_after_the_daemon_restarts(
        pair: tuple[Daemon, Daemon], alice: Client) -> None:
    a, b = pair
    relay = await Relay(b.port("xmpp")).start()
    bob = await SmClient(b.accounts["Bob"], b, relay.port).login()
    text = _long(f"never acknowledged {time.monotonic_ns():x}-{next(_unique)}")
    try:
        await _swallowed(alice, bob, relay, text)
    finally:
        await relay.close()
    assert b.stop(signal.SIGTERM) == 0
    b.start("--peer", a.p2p)
    later = await Client(b.accounts["Bob"], b, "laptop").login()
    try:
        await later.wait_body(alice.account.contact_jid, text, 60)
        await later.ping_server()
        assert later.bodies(alice.account.contact_jid).count(text) == 1
    finally:
        await later.close()
