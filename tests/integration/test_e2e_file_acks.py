"""End to end: the contact's daemon confirms a file it kept (``bridge.fileacks``), and
the sender's client sees that as the XEP-0184 receipt of the file's message. Two real
``paranoim run`` daemons and slixmpp clients; what happens without the receipt (the
sender's person told after the chunks' hour) is in ``test_file_acks.py``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import slixmpp

from tests.integration.e2e_support import Daemon, pair_from_template, start_pair
from tests.integration.test_e2e_files import _login, oob, png, trust, upload

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def daemons(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(),
                              tmp_path_factory.mktemp("file-acks"))
    try:
        start_pair(a, b)
        trust(a, b)
        yield a, b
    finally:
        b.stop()
        a.stop()


async def test_the_file_is_confirmed_to_the_senders_client(
        daemons: tuple[Daemon, Daemon]) -> None:
    a, b = daemons
    alice = await _login(a, "Alice")
    bob = await _login(b, "Bob")
    try:
        await alice.wait(alice.peers, 20, "daemon A linked to B")
        url = await upload(alice, "small.png", png(40, 40), "image/png")
        bob_jid, alice_jid = b.accounts["Bob"].contact_jid, a.accounts["Alice"].contact_jid
        msg = alice.make_message(mto=slixmpp.JID(bob_jid), mbody=url, mtype="chat")
        msg["oob"]["url"] = url
        msg["id"] = "pic-ack"
        msg.send()
        await bob.wait(lambda: any(oob(m) for m in bob.from_(alice_jid)), 60, "the file")
        await alice.wait(lambda: "pic-ack" in alice.receipts(bob_jid), 60, "the receipt")
        told = alice.bodies("paranoim@localhost")  # the status asked above, nothing else
        assert told and not [t for t in told if "pic-ack" in t]
    finally:
        await alice.close()
        await bob.close()
