"""Regression tests for what the end-to-end suite (test_e2e_xmpp*.py) found.

Each runs in well under a second against the listener with a fake service, or
on the piece alone, so the bug stays fixed without starting two daemons.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from bridge.core.identity import Identity
from bridge.core.invite import parse_invite
from bridge.core.seal import MAX_PAYLOAD
from bridge.events import ContactInfo, NodeHealth
from bridge.service import MessageTooLargeError
from bridge.xmpp import C2SServer
from bridge.xmpp.bot import Bot
from bridge.xmpp.errors import stanza_error_for
from bridge.xmpp.jids import Domains
from tests.fakes import FakeService, SlixClient


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
