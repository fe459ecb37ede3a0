"""The gateway as an XEP-0114 component of a real Prosody (run as a non-root user).

Two real services on two real P2P nodes peered over loopback. Service A's
gateway is a component ``p2p.localhost`` of Prosody; a slixmpp ClientXMPP logs
in to Prosody as ``alice@localhost``, registers with the gateway (XEP-0077),
adds a P2P contact, and chats with Bob, an identity on service B. With
mod_privilege the contacts appear in Alice's roster by privileged roster sets
(XEP-0356); without it, as subscription requests from the contact's JID.
"""

from __future__ import annotations

import asyncio
import json
import stat
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID

from bridge.events import Event, MessageArrived
from bridge.net.node import Node
from bridge.net.workers import WorkerPool
from bridge.service import Service
from bridge.store.keystore import Keystore
from bridge.xmpp.component import Component, ComponentError
from tests.gossip_support import fast_config
from tests.interop.drivers import ProgramMissing, Prosody, SlixClient
from tests.util import skip_or_fail, wait_until

BITS = 6
DOMAIN = "p2p.localhost"
REGISTER = "{jabber:iq:register}"


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    p = WorkerPool(2)
    yield p
    p.close()


class Peer:
    """A real node and a real service with their own data dir."""

    def __init__(self, data_dir: Path, pool: WorkerPool, bootstrap: list[str]) -> None:
        self.data_dir = data_dir
        self.node = Node(fast_config(base_bits=BITS, bootstrap=bootstrap))
        self.service = Service(Keystore(data_dir), self.node, pool, base_bits=BITS)
        self.events: list[Event] = []
        self.service.subscribe(self.events.append)

    async def start(self) -> Peer:
        await self.node.start()
        await self.service.start()
        return self

    async def stop(self) -> None:
        await self.service.stop()
        await self.node.stop()

    def texts(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, MessageArrived)]


@pytest.fixture
async def peers(tmp_path: Path, pool: WorkerPool) -> AsyncIterator[tuple[Peer, Peer]]:
    a = await Peer(tmp_path / "a", pool, []).start()
    b = await Peer(tmp_path / "b", pool, [f"127.0.0.1:{a.node.port}"]).start()
    try:
        await wait_until(lambda: a.node.peers() and b.node.peers(), 10, message="peering")
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def start_prosody(privileges: bool) -> Prosody:
    try:
        return Prosody(component=DOMAIN, privileges=privileges).start()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    server = start_prosody(privileges=True)
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def prosody_plain() -> Iterator[Prosody]:
    server = start_prosody(privileges=False)
    try:
        yield server
    finally:
        server.cleanup()


async def attach(peer: Peer, prosody: Prosody) -> Component:
    component = Component(peer.service, DOMAIN, "127.0.0.1", prosody.component_port,
                          prosody.component_secret, peer.data_dir)
    await component.start()
    return component


async def login(prosody: Prosody, user: str) -> SlixClient:
    prosody.register(user, f"{user}-pw")
    client = SlixClient(f"{user}@localhost/test", f"{user}-pw", port=prosody.c2s_port,
                        ca_cert=prosody.cert.cert)
    return await client.start()


async def register(client: SlixClient, **fields: str) -> Any:
    iq = client.make_iq_set(ito=DOMAIN)
    query = ET.SubElement(iq.xml, REGISTER + "query")
    for name, value in fields.items():
        ET.SubElement(query, REGISTER + name).text = value
    return await iq.send(timeout=15)  # type: ignore[no-untyped-call]


def roster_item(client: SlixClient, jid: str) -> dict[str, Any] | None:
    roster = client.client_roster
    if jid not in roster:
        return None
    item = roster[jid]
    return {"subscription": item["subscription"], "name": item["name"]}


async def test_component_chats_through_prosody_with_privileged_roster(
    prosody: Prosody, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    component = await attach(a, prosody)
    client = await login(prosody, "alice")
    try:
        # mod_privilege tells the component what it may do as soon as it connects
        await wait_until(lambda: component.privileges.get("localhost"), 10,
                         message="XEP-0356 privilege message")
        assert component.privileges["localhost"]["roster"] == "both"

        # the registration form, then registration: a new identity for alice@localhost
        get = client.make_iq_get(ito=DOMAIN)
        get.append(ET.Element(REGISTER + "query"))
        form = await get.send(timeout=10)  # type: ignore[no-untyped-call]
        assert form.xml.find(f"{REGISTER}query/{REGISTER}nick") is not None
        await register(client, nick="Alice")
        alice = a.service.identities()[0]
        assert alice.nick == "Alice"
        links = a.data_dir / "xmpp-links.json"
        assert json.loads(links.read_text())["links"] == [
            {"jid": "alice@localhost", "address": alice.address}]
        assert stat.S_IMODE(links.stat().st_mode) == 0o600
        # the gateway and its bot were written into alice's roster by privileged sets
        await wait_until(lambda: roster_item(client, DOMAIN), 10, message="gateway in roster")
        assert roster_item(client, DOMAIN) == {"subscription": "both", "name": "ParanoIM"}

        # a contact added on the P2P side appears in the client's roster (privileged push)
        carol = await b.service.create_identity("Carol")
        a.service.add_contact(alice.address, carol.address, "Carol")
        carol_jid = f"{carol.address}@{DOMAIN}"
        await wait_until(lambda: roster_item(client, carol_jid), 10, message="carol pushed")
        assert roster_item(client, carol_jid) == {"subscription": "both", "name": "Carol"}

        # adding a P2P contact from the client: a subscription request to its JID
        bob = await b.service.create_identity("Bob")
        bob_jid = f"{bob.address}@{DOMAIN}"
        client.update_roster(JID(bob_jid), name="Bob")
        client.send_presence(pto=bob_jid, ptype="subscribe")
        await wait_until(lambda: any(c.address == bob.address
                                     for c in a.service.contacts(alice.address)), 10,
                         message="bob added to alice's contacts")
        await wait_until(lambda: (roster_item(client, bob_jid) or {}).get("subscription")
                         == "both", 10, message="bob with subscription both")
        b.service.add_contact(bob.address, alice.address, "Alice")

        # a chat message crosses the P2P network to Bob's service ...
        client.send_chat(bob_jid, "hello bob, through prosody and p2p")
        await wait_until(lambda: "hello bob, through prosody and p2p" in b.texts(), 20,
                         message="message at bob's service")
        # ... and Bob's answer arrives in Alice's client, from Bob's JID
        await b.service.send_message(bob.address, alice.address, "hi alice, p2p here")
        got = await client.wait_for_message("hi alice, p2p here", timeout=20)
        assert got.sender == bob_jid

        # the bot answers on the component too
        client.send_chat(f"paranoim@{DOMAIN}", "help")
        await client.wait_for_message("ParanoIM gateway commands", timeout=10)

        # the link survives a restart of the component (the data dir keeps it)
        await component.close()
        component = await attach(a, prosody)
        await b.service.send_message(bob.address, alice.address, "after restart")
        await client.wait_for_message("after restart", timeout=20)
    finally:
        await client.stop()
        await component.close()


async def test_without_privileges_contacts_ask_for_subscription(
    prosody_plain: Prosody, peers: tuple[Peer, Peer]
) -> None:
    a, b = peers
    component = await attach(a, prosody_plain)
    client = await login(prosody_plain, "dora")
    asked: list[str] = []
    errors: list[str] = []
    client.add_event_handler("presence_subscribe", lambda p: asked.append(p["from"].bare))
    client.add_event_handler("message_error", lambda m: errors.append(m["error"]["condition"]))
    try:
        await register(client, nick="Dora")
        dora = a.service.identities()[0]
        await wait_until(lambda: DOMAIN in asked, 10, message="gateway asks to subscribe")
        erin = await b.service.create_identity("Erin")
        a.service.add_contact(dora.address, erin.address, "Erin")
        erin_jid = f"{erin.address}@{DOMAIN}"
        await wait_until(lambda: erin_jid in asked, 10, message="subscription request")
        # slixmpp accepts and subscribes back, as most clients offer to
        await wait_until(lambda: (roster_item(client, erin_jid) or {}).get("subscription")
                         == "both", 10, message="erin with subscription both")
        assert component.privileges.get("localhost", {}).get("roster") is None

        # unregistering unlinks the account; messages are refused again
        await register(client, remove="")
        assert a.data_dir.joinpath("xmpp-links.json").read_text().count("dora") == 0
        assert component.links.address_for("dora@localhost") is None
        client.send_chat(erin_jid, "still there?")
        await wait_until(lambda: errors, 10, message="an error for an unregistered sender")
        assert errors == ["registration-required"]
    finally:
        await client.stop()
        await component.close()


async def test_wrong_secret_is_a_clear_error(prosody: Prosody, tmp_path: Path,
                                             pool: WorkerPool) -> None:
    a = await Peer(tmp_path / "a", pool, []).start()
    try:
        component = Component(a.service, DOMAIN, "127.0.0.1", prosody.component_port,
                              "not-the-secret", tmp_path / "a")
        with pytest.raises(ComponentError, match="secret does not match"):
            await component.start()
        await component.close()
        wrong = Component(a.service, "other.localhost", "127.0.0.1", prosody.component_port,
                          prosody.component_secret, tmp_path / "a")
        with pytest.raises(ComponentError, match="refused"):
            await wrong.start()
        await wrong.close()
    finally:
        await a.stop()
    await asyncio.sleep(0)


async def test_a_deleted_identity_unlinks_its_user_and_says_so(
    prosody: Prosody, peers: tuple[Peer, Peer]
) -> None:
    """Regression: a deleted identity stayed linked and kept chatting over XMPP."""
    a, _ = peers
    component = await attach(a, prosody)
    client = await login(prosody, "erin")
    errors: list[str] = []
    client.add_event_handler("message_error", lambda m: errors.append(m["error"]["condition"]))
    try:
        await register(client, nick="Erin")
        erin = a.service.identities()[0]
        a.service.delete_identity(erin.address)
        await client.wait_for_message("Your ParanoIM identity was deleted", timeout=15)
        assert component.links.address_for("erin@localhost") is None
        assert "erin" not in a.data_dir.joinpath("xmpp-links.json").read_text()
        client.send_chat(f"paranoim@{DOMAIN}", "help")
        await wait_until(lambda: errors, 10, message="an error for the unlinked user")
        assert errors == ["registration-required"]
    finally:
        await client.stop()
        await component.close()
