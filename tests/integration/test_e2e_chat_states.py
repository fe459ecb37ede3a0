"""End to end: XEP-0085 chat states between two real daemons started with
``--chat-states``, each with a slixmpp client (the set-up of ``test_e2e_xmpp.py``:
Alice on A, Bob on B, contacts of each other). A <composing/> typed at Alice's
client crosses the gateway, the service (a sealed, short-lived, PoW-stamped
envelope), gossip between the nodes, and Bob's gateway, and reaches Bob's client."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import slixmpp

from tests.integration.e2e_support import Client, Daemon, pair_from_template, start_pair

pytestmark = pytest.mark.slow
NS = "http://jabber.org/protocol/chatstates"


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp("e2e-chat-states"))
    try:
        start_pair(a, b, "--chat-states")
        yield a, b
    finally:
        b.stop()
        a.stop()


def _send_state(client: Client, to: str, state: str, body: str | None = None) -> None:
    msg = client.make_message(mto=slixmpp.JID(to), mbody=body, mtype="chat")
    msg.xml.append(ET.Element(f"{{{NS}}}{state}"))
    msg.send()


def _states(client: Client, jid: str) -> list[tuple[str, str]]:
    """(state, body) of every message from ``jid`` carrying a chat state, in order."""
    out = []
    for m in client.messages:
        if m["from"].bare != jid:
            continue
        for child in m.xml:
            if child.tag.startswith(f"{{{NS}}}"):
                out.append((child.tag.rpartition("}")[2], str(m["body"])))
    return out


async def test_typing_crosses_the_network(daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    alice_acc, bob_acc = a.accounts["Alice"], b.accounts["Bob"]
    alice = await Client(alice_acc, a).login()
    bob = await Client(bob_acc, b).login()
    try:
        assert "Chat states on" in a.log_text()
        await alice.wait(alice.peers, 20, "daemon A linked to B")
        # contacts announce the feature, so real clients send their states
        info: Any = await alice.plugin["xep_0030"].get_info(jid=bob_acc.contact_jid,
                                                            timeout=10)
        assert NS in info["disco_info"]["features"]

        _send_state(alice, bob_acc.contact_jid, "composing")
        await bob.wait(lambda: ("composing", "") in _states(bob, alice_acc.contact_jid), 30,
                       "Alice's <composing/> at Bob")
        # the message that follows carries <active/> (it is implied: nothing more is sent)
        _send_state(alice, bob_acc.contact_jid, "active", body="typed at last")
        await bob.wait_body(alice_acc.contact_jid, "typed at last", 30)
        assert _states(bob, alice_acc.contact_jid)[-1] == ("active", "typed at last")

        # and the other way: Bob pauses, Alice sees it
        _send_state(bob, alice_acc.contact_jid, "composing")
        _send_state(bob, alice_acc.contact_jid, "paused")
        await alice.wait(lambda: ("paused", "") in _states(alice, bob_acc.contact_jid), 30,
                         "Bob's <paused/> at Alice")
        assert alice.errors() == [] and bob.errors() == []
    finally:
        await alice.close()
        await bob.close()
