"""The gateway as an XEP-0114 component of a real ejabberd 23.01 (Debian's package).

ejabberd advertises XEP-0356 grants under ``urn:xmpp:privilege:1`` (its xmpp library has
no ``:2``); the gateway reads them, so the user guide's ``mod_privilege`` snippet (access
rules, not ACL names) grants ``roster = both``. ejabberd 23.01's mod_roster then fails on
every privileged roster set (internal-server-error: it looks up its options under the
component's domain), so the gateway falls back to subscription requests, each carrying the
contact's petname as an XEP-0172 nick: the petname reaches the user either way. Two real
services on two real P2P nodes; a slixmpp client logs in to ejabberd as alice@localhost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from slixmpp import JID

from bridge.xmpp.component import Component
from bridge.xmpp.privilege import PRIVILEGE_NS_1
from tests.interop.drivers import Ejabberd, ProgramMissing, SlixClient
from tests.interop.test_component import (  # noqa: F401 — pool and peers are fixtures
    DOMAIN,
    Peer,
    peers,
    pool,
    register,
    roster_item,
)
from tests.util import skip_or_fail, wait_until

NICK = "{http://jabber.org/protocol/nick}nick"


@pytest.fixture
def ejabberd() -> Iterator[Ejabberd]:
    try:
        server = Ejabberd(component=DOMAIN, privileges=True).start()
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
    try:
        yield server
    finally:
        server.cleanup()


async def test_component_chats_through_ejabberd_with_privilege_1(
        ejabberd: Ejabberd, peers: tuple[Peer, Peer]) -> None:  # noqa: F811
    a, b = peers
    component = Component(a.service, DOMAIN, "127.0.0.1", ejabberd.component_port,
                          ejabberd.component_secret, a.data_dir)
    await component.start()
    ejabberd.register("alice", "alice-pw")
    client = await SlixClient("alice@localhost/test", "alice-pw", port=ejabberd.c2s_port,
                              ca_cert=ejabberd.cert.cert).start()
    asked: dict[str, str] = {}  # contact JID -> the nick its subscription request carried
    client.add_event_handler(
        "presence_subscribe",
        lambda p: asked.__setitem__(p["from"].bare, p.xml.findtext(NICK) or ""))
    try:
        # the access rule grants roster access, advertised in the old namespace
        await wait_until(lambda: component.privilege.namespaces.get("localhost"), 15,
                         message="XEP-0356 privilege message from ejabberd")
        assert component.privilege.namespaces["localhost"] == PRIVILEGE_NS_1
        assert "Granting permissions" in ejabberd.log_text()

        await register(client, nick="Alice")
        alice = a.service.identities()[0]
        # the gateway reaches the roster: by a privileged set, or (23.01) by a request
        await wait_until(lambda: (roster_item(client, DOMAIN) or {}).get("subscription")
                         == "both", 15, message="the gateway in alice's roster")

        carol = await b.service.create_identity("Carol")
        a.service.add_contact(alice.address, carol.address, "Carol")
        carol_jid = f"{carol.address}@{DOMAIN}"
        await wait_until(lambda: (roster_item(client, carol_jid) or {}).get("subscription")
                         == "both", 15, message="carol in alice's roster")
        # the petname arrives: as the roster item's name, or as the request's nick
        assert "Carol" in ((roster_item(client, carol_jid) or {}).get("name"),
                           asked.get(carol_jid))

        # a chat crosses the P2P network both ways
        bob = await b.service.create_identity("Bob")
        bob_jid = f"{bob.address}@{DOMAIN}"
        client.update_roster(JID(bob_jid), name="Bob")
        client.send_presence(pto=bob_jid, ptype="subscribe")
        await wait_until(lambda: any(c.address == bob.address
                                     for c in a.service.contacts(alice.address)), 15,
                         message="bob added to alice's contacts")
        b.service.add_contact(bob.address, alice.address, "Alice")
        client.send_chat(bob_jid, "hello bob, through ejabberd and p2p")
        await wait_until(lambda: "hello bob, through ejabberd and p2p" in b.texts(), 30,
                         message="message at bob's service")
        await b.service.send_message(bob.address, alice.address, "hi alice, p2p here")
        got: Any = await client.wait_for_message("hi alice, p2p here", timeout=30)
        assert got.sender == bob_jid
    finally:
        await client.stop()
        await component.close()
    await asyncio.sleep(0)
