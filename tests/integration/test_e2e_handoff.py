"""Two real daemons that carry different halves chat through relays by hand-off
(docs/sharding.md, "Sending to another shard (hand-off)"): A carries the prefix of
Alice's shard key, B that of Bob's, cut at the first bit where the two keys differ (at
depth 1, the two halves); relay RA carries A's prefix, RB B's, and RB dials RA. A dials
RA, B dials RB: neither talker has an ordinary link to a node that carries the other's
shard, so each message leaves its sender's daemon on hand-off links only.

Alice and Bob first write to each other while both daemons carry everything, linked to
each other, so that each has read the other's announcement and their messages go in a
session (a version-2 envelope with a tag in the recipient's shard). What a daemon
carrying a part cannot receive yet is said in docs/sharding.md."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from tests.integration.e2e_support import Client, Daemon, in_parallel, pair_from_template
from tests.integration.mesh_support import carry, halves, relays_linked, shard_of, stored

pytestmark = pytest.mark.slow
_unique = itertools.count(1)


async def test_daemons_of_different_halves_chat_through_relays_by_hand_off(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("hand"))
    alice, bob = a.accounts["Alice"], b.accounts["Bob"]
    ka, kb, cut = shard_of(alice), shard_of(bob), halves(alice, bob)
    if cut is None:
        pytest.skip("Alice and Bob share a shard key (one chance in 65,536)")
    pa, pb = cut
    ra, rb = Daemon(tmp_path / "ra", "RA"), Daemon(tmp_path / "rb", "RB")
    carry(ra, pa)
    carry(rb, pb)
    run = f"{time.monotonic_ns():x}-{next(_unique)}"
    jid_a, jid_b = alice.contact_jid, bob.contact_jid
    try:
        # 1. both carry everything: each reads the other's announcement, sessions start
        in_parallel(lambda: a.start(), lambda: b.start("--peer", a.p2p))
        ca, cb = await Client(alice, a).login(), await Client(bob, b).login()
        try:
            for n in range(2):
                ca.chat(jid_b, f"hello {run} {n}")
                await cb.wait_body(jid_a, f"hello {run} {n}", 30)
                cb.chat(jid_a, f"hi {run} {n}")
                await ca.wait_body(jid_b, f"hi {run} {n}", 30)
        finally:
            await ca.close()
            await cb.close()
        assert a.stop() == 0 and b.stop() == 0

        # 2. each carries its own half only, and links only to a relay of it
        carry(a, pa)
        carry(b, pb)
        in_parallel(lambda: ra.start("--storage", "sqlite"),
                    lambda: rb.start("--storage", "sqlite", "--peer", ra.p2p),
                    lambda: a.start("--peer", ra.p2p), lambda: b.start("--peer", rb.p2p))
        ca, cb = await Client(alice, a).login(), await Client(bob, b).login()
        try:
            await ca.wait(ca.peers, 20, "A linked to RA")
            await cb.wait(cb.peers, 20, "B linked to RB")
            # A network already up, as a person meets it: a hand-off that finds no
            # carrier at all waits for the next round (15 s), which this test does not time
            await ca.wait(lambda: relays_linked(ra), 20, "RA linked to A and RB")
            took = []
            for n in range(3):
                t0 = time.monotonic()
                ca.chat(jid_b, f"across {run} {n}")
                await cb.wait_body(jid_a, f"across {run} {n}", 60)
                cb.chat(jid_a, f"back {run} {n}")
                await ca.wait_body(jid_b, f"back {run} {n}", 60)
                took.append(time.monotonic() - t0)
            print(f"\nround trips through hand-off links (s): {[round(t, 2) for t in took]}")
            assert ca.errors() == [] and cb.errors() == []
            got = [t for t in cb.bodies(jid_a) if t.startswith("across")]
            assert got == [f"across {run} {n}" for n in range(3)]  # once each, in order
        finally:
            await ca.close()
            await cb.close()
        # each relay stores only its prefix, and holds the messages to its talker
        held = {d.name: stored(d.data_dir) for d in (ra, rb)}
        assert all(pa.holds(s) for s in held["RA"].values()), held["RA"]
        assert all(pb.holds(s) for s in held["RB"].values()), held["RB"]
        assert sum(s == kb for s in held["RB"].values()) >= 3
        assert sum(s == ka for s in held["RA"].values()) >= 3
    finally:
        for d in (a, b, ra, rb):
            d.stop()
