"""profanity finds its conversation in the daemon's XEP-0313 archive after a restart.

A person chats from profanity (on daemon A) with Bob (a slixmpp client on daemon B),
then starts profanity again from nothing (a new home: no chat log of its own, as after
a reinstall or on a second machine), turns MAM on (``/mam on``, as the person would)
and opens the chat with Bob. profanity asks the archive for the last week
(``urn:xmpp:mam:2`` with ``with`` and ``start``) and logs what it gets; its chat log
database then holds the whole conversation, which it can only have from the archive.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.interop.drivers import Profanity, ProgramMissing, SlixClient
from tests.interop.test_clients import Daemon, Network
from tests.util import skip_or_fail, wait_until

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    root = tmp_path_factory.mktemp("history")
    a, b = Daemon(root / "a"), Daemon(root / "b")
    a.new_identity("Prof")
    b.new_identity("Bob")
    try:
        a.run()
        b.run("--peer", f"127.0.0.1:{a.port('p2p')}")
        yield Network(a, b)
    finally:
        b.stop()
        a.stop()


@pytest.fixture
async def bob(network: Network) -> AsyncIterator[SlixClient]:
    account = network.b.accounts["Bob"]
    client = SlixClient(f"{account.jid}/slix", account.password,
                        port=network.b.port("xmpp"), ca_cert=network.b.cert)
    await client.start()
    client.send_chat("paranoim@localhost", "status")
    await client.wait_for_message("peers connected: 1", sender="paranoim@localhost",
                                  timeout=20)
    try:
        yield client
    finally:
        await client.stop()


def profanity(network: Network) -> Profanity:
    me = network.a.accounts["Prof"]
    try:
        return Profanity(me.jid, me.password, port=network.a.port("xmpp"),
                         cert_pem=network.a.cert.read_text())
    except ProgramMissing as exc:
        skip_or_fail(str(exc))
        raise


async def test_profanity_sees_the_archive_after_starting_again(network: Network,
                                                               bob: SlixClient) -> None:
    me, them = network.a.accounts["Prof"], network.b.accounts["Bob"]
    run = f"{time.monotonic_ns():x}"
    bob.send_presence(pto=me.contact_jid, ptype="subscribe")
    await wait_until(lambda: me.contact_jid in bob.client_roster
                     and bob.client_roster[me.contact_jid]["subscription"] == "both",
                     10, message="Bob's roster has the contact")
    said = [f"first from bob {run}", f"second from bob {run}"]

    first = profanity(network)
    with first:
        await first.wait_logged_in(timeout=30)
        # writing to Bob makes him a contact: his answers are shown, not held
        await first.send(them.contact_jid, f"hello from profanity {run}")
        await bob.wait_for_message(f"hello from profanity {run}", timeout=30)
        for text in said:
            bob.send_chat(me.contact_jid, text)
            await first.wait_for_message(text, timeout=30)

    again = profanity(network)  # a new home: nothing of the first run's log
    with again:
        await again.wait_logged_in(timeout=30)
        assert [m for m in again.messages() if run in m.body] == []
        again.pane.send_literal("/mam on")
        again.pane.send_keys("Enter")
        await again.pane.wait_for("Message Archive Management enabled", 10)
        again.pane.send_literal(f"/msg {them.contact_jid}")
        again.pane.send_keys("Enter")
        for text in said:
            got = await again.wait_for_message(text, timeout=30)
            assert got.sender == them.contact_jid
        # what it sent itself comes from the archive too, all in the order written
        logged = [(m.sender, m.body) for m in again.messages() if run in m.body]
        assert logged == [(me.jid, f"hello from profanity {run}"),
                          *[(them.contact_jid, text) for text in said]]
