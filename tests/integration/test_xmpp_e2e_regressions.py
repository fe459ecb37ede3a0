"""Regression tests for what the end-to-end suite (test_e2e_xmpp*.py) found.

Each runs in well under a second against the listener with a fake service, or
on the piece alone, so the bug stays fixed without starting two daemons.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from bridge.core.identity import Identity
from bridge.core.invite import parse_invite
from bridge.core.seal import MAX_PAYLOAD
from bridge.events import ContactInfo, Event, MessageArrived, NodeHealth
from bridge.net.workers import WorkerPool
from bridge.service import MessageTooLargeError, Service
from bridge.store.keystore import Keystore
from bridge.xmpp import C2SServer
from bridge.xmpp.bot import Bot
from bridge.xmpp.errors import stanza_error_for
from bridge.xmpp.jids import Domains
from tests.fakes import FakeService, SlixClient, make_address
from tests.nodes import SharedNode


class InviteParsingService(FakeService):
    """Adds contacts the way the real service does: through ``parse_invite``."""

    def add_contact(self, owner: str, link_or_address: str, petname: str = "") -> ContactInfo:
        parse_invite(link_or_address)  # BadInviteError: "neither a ParanoIM link nor ..."
        return super().add_contact(owner, link_or_address, petname)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[SlixClient]:
    service = InviteParsingService()
    service.add_user("alice", "alice-pw")
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await server.start()
    c = await SlixClient("alice@localhost/laptop", "alice-pw", server.cert_path).connect(
        server.port)
    assert c.started.is_set()
    yield c
    await c.close()
    await server.close()


async def test_roster_add_of_a_mistyped_address_says_the_checksum_is_wrong(
        client: SlixClient) -> None:
    """It answered bad-request "neither a ParanoIM link nor an address: ...", which
    speaks of links the person never typed; a JID can only have a wrong address."""
    address = Identity.from_seed(b"d" * 32).address
    typo = address[:10] + ("a" if address[10] != "a" else "b") + address[11:]
    with pytest.raises(IqError) as refused:
        await client.xmpp.update_roster(f"{typo}@p2p.localhost", name="Dave")
    error = refused.value.iq["error"]
    assert (error["type"], error["condition"]) == ("modify", "jid-malformed")
    assert error["text"] == "the address checksum does not match: a character was mistyped or lost"

    await client.xmpp.update_roster(f"{address}@p2p.localhost", name="Dave")  # the right one


def test_too_large_message_is_not_acceptable_not_undefined() -> None:
    """A message over the envelope limit came back as cancel/undefined-condition; the
    mapping (docs/xmpp-mapping.md) gives an oversize input modify/not-acceptable."""
    err = stanza_error_for(MessageTooLargeError(
        f"the message is {MAX_PAYLOAD + 1} bytes; at most {MAX_PAYLOAD} fit in one envelope"))
    assert (err.etype, err.condition) == ("modify", "not-acceptable")
    assert "at most" in err.text


def test_bot_counts_only_linked_peers_as_connected() -> None:
    """``status`` said "peers connected: N" for every listed peer, linked or not (a
    handshake under way, a configured peer that is down, no P2P node at all)."""
    service = FakeService()
    owner = service.add_user("alice", "pw")
    peers: list[dict[str, object]] = [
        {"address": "127.0.0.1:1", "state": "active"},
        {"address": "127.0.0.1:2", "state": "hello_sent"},
        {"address": "127.0.0.1:3", "state": "not connected (no P2P node)"},
    ]
    health = replace(FakeService.health(service), peers=peers)
    service.health = lambda: health  # type: ignore[method-assign]
    answer = Bot(service, Domains()).answer(owner, "status")
    assert "peers connected: 1 (2 not connected)" in answer

    health = NodeHealth(peers=[])
    assert "peers connected: 0\n" in Bot(service, Domains()).answer(owner, "status")


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    yield workers
    workers.close()


async def test_messages_sent_within_one_second_carry_increasing_times(
        tmp_path: Path, pool: WorkerPool) -> None:
    """sent_at_ms was the clock's whole second times 1000, so the recipient could not
    tell the order of messages written within one second once a catch-up (after B
    restarted) delivered them in id order."""
    now = int(time.time())
    node = SharedNode(4)
    a = Service(Keystore(tmp_path / "a"), node, pool, base_bits=4, clock=lambda: now)
    b = Service(Keystore(tmp_path / "b"), node, pool, base_bits=4, clock=lambda: now)
    await a.start()
    await b.start()
    alice, bob = await a.create_identity("Alice"), await b.create_identity("Bob")
    b.add_contact(bob.address, alice.address)
    arrived: list[MessageArrived] = []
    b.subscribe(lambda e: arrived.append(e) if isinstance(e, MessageArrived) else None)
    for n in range(3):
        await a.send_message(alice.address, bob.address, f"#{n}")
    assert [m.text for m in arrived] == ["#0", "#1", "#2"]
    times = [m.sent_at_ms for m in arrived]
    assert times == sorted(set(times)) and times[0] == now * 1000
    await a.stop()
    await b.stop()


async def test_held_messages_are_given_in_sent_order(tmp_path: Path) -> None:
    """What waited for a client came in the order the network handed it over (a
    catch-up gives envelopes in id order), not in the order it was written."""
    service = FakeService()
    alice = service.add_user("alice", "alice-pw")
    carol = make_address(b"carol")
    server = C2SServer(service, "127.0.0.1", 0, tmp_path / "tls")
    await server.start()
    try:
        for n in (2, 0, 1):  # the order a reconciliation might bring them in
            event: Event = MessageArrived(to=alice.address, sender=carol, text=f"#{n}",
                                          sent_at_ms=1_700_000_000_000 + n,
                                          envelope_id=os.urandom(32), receipt_wanted=False)
            server.gateway.dispatch(event)
        client = await SlixClient("alice@localhost/laptop", "alice-pw",
                                  server.cert_path).connect(server.port)
        texts = [str((await client.next_message(lambda m: bool(m["body"])))["body"])  # type: ignore[index]
                 for _ in range(3)]
        assert texts == ["#0", "#1", "#2"]
        await client.close()
    finally:
        await server.close()
