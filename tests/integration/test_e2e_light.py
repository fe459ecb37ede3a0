"""A light daemon end to end: two real ``paranoim run`` daemons, A started with
``--light`` (Alice) and linked to B, a full node (Bob, Carol, Mallory). Alice and Bob
chat both ways through B's node; A keeps only what its identity opens (Carol's
announcement, which Alice does not watch, is read and dropped); after A was stopped for
a while and started again on its SQLite store, Alice gets what Bob sent meanwhile, once,
in order; and what Alice writes while B is down leaves A once B is back
(docs/sharding.md, "Light nodes")."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import pytest

from tests.integration.e2e_support import Client, Daemon, in_parallel, pair_from_template

pytestmark = pytest.mark.slow
_unique = itertools.count(1)
LIGHT = ("--light", "--storage", "sqlite")


@pytest.fixture
def light_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("light"))
    try:
        in_parallel(lambda: b.start(), lambda: a.start("--peer", b.p2p, *LIGHT))
        yield a, b
    finally:
        a.stop()
        b.stop()


async def _stored(client: Client, count: int) -> bool:
    return await client.stored_envelopes() >= count


async def _peers(client: Client, count: int) -> bool:
    return await client.peers() == count


async def test_a_light_daemon_chats_both_ways_and_gets_what_came_while_it_was_away(
        light_pair: tuple[Daemon, Daemon]) -> None:
    a, b = light_pair
    run = f"{time.monotonic_ns():x}-{next(_unique)}"
    alice_jid, bob_jid = a.accounts["Alice"].contact_jid, b.accounts["Bob"].contact_jid
    alice = await Client(a.accounts["Alice"], a).login()
    bob = await Client(b.accounts["Bob"], b).login()
    try:
        await alice.wait(alice.peers, 20, "A linked to B")
        alice.chat(bob_jid, f"from the light node {run}")
        await bob.wait_body(alice_jid, f"from the light node {run}", 30)
        bob.chat(alice_jid, f"to the light node {run}")
        await alice.wait_body(bob_jid, f"to the light node {run}", 30)
        assert "Light node" in a.log_text() and "Light node" not in b.log_text()
        # the full node holds everything; the light one only what Alice opens or sent
        light, full = await alice.stored_envelopes(), await bob.stored_envelopes()
        assert 0 < light < full, (light, full)

        await alice.close()
        assert a.stop() == 0
        away = [f"while A is away {run} #{n}" for n in range(3)]
        for text in away:  # one envelope each: written while none is being sealed
            stored = await bob.stored_envelopes()
            bob.chat(alice_jid, text)
            await bob.wait(lambda n=stored: _stored(bob, n + 1), 30, "Bob's envelope on B")
        assert bob.errors() == []

        a.start("--peer", b.p2p, *LIGHT)
        alice = await Client(a.accounts["Alice"], a).login()
        await alice.wait(lambda: len([t for t in alice.bodies(bob_jid) if run in t]) >= 3, 30,
                         "what Bob sent while A was away")
        alice.chat(bob_jid, f"back {run}")
        await bob.wait_body(alice_jid, f"back {run}", 30)
        await alice.ping_server()
        got = [t for t in alice.bodies(bob_jid) if run in t]
        assert got == away, got  # once each, in order (the first came before the restart)
        assert alice.errors() == []

        # Alice writes while the light daemon has no link: it leaves once B is back
        await bob.close()
        assert b.stop() == 0
        await alice.wait(lambda: _peers(alice, 0), 30, "A without a link")
        stored = await alice.stored_envelopes()
        alice.chat(bob_jid, f"while B is away {run}")
        await alice.wait(lambda: _stored(alice, stored + 1), 30, "Alice's envelope on A")
        b.start()
        bob = await Client(b.accounts["Bob"], b).login()
        await bob.wait_body(alice_jid, f"while B is away {run}", 90)
    finally:
        await alice.close()
        await bob.close()
