"""Two real daemons that carry different halves from their first start, and never
anything else, end up writing in a session: each learns the other's hybrid prekeys
from the announcement its contact's daemon seals to it in its own shard
(docs/sharding.md, "Announcements to contacts"), since the public one, in the
announcer's shard, never reaches it.

As in test_e2e_handoff.py: A carries the prefix of Alice's shard key, B that of
Bob's, cut at the first bit where the two keys differ; relay RA carries A's prefix,
RB B's, RB dials RA, A dials RA and B dials RB. Alice and Bob write from the first
minute (the first messages go version 1, sealed to the contact's identity key, in the
recipient's shard), and keep writing until both daemons say their messages go in a
session; every message arrives once and in order, and the relay of Bob's half holds
version-2 messages to Bob."""

from __future__ import annotations

import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from bridge.core.envelope import Kind, parse_envelope
from tests.integration.e2e_support import Client, Daemon, in_parallel, pair_from_template
from tests.integration.mesh_support import carry, halves, relays_linked, shard_of

pytestmark = pytest.mark.slow
_unique = itertools.count(1)
NO_KEYS = "have not arrived yet"
IN_SESSION = ("End-to-end session", "Session started")


def versions_to(data_dir: Path, shard: int) -> list[tuple[int, Kind]]:
    """(version, kind) of each envelope in a daemon's SQLite store under ``shard``."""
    db = sqlite3.connect(f"file:{data_dir / 'envelopes.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT raw FROM envelopes").fetchall()
    finally:
        db.close()
    envs = [parse_envelope(bytes(r[0])) for r in rows]
    return [(e.version, e.kind) for e in envs if int.from_bytes(e.tag[:2], "big") == shard]


async def protection(c: Client, who: str) -> str:
    """What the bot says of how messages to the contact ``who`` are protected."""
    return await c.bot(f"contact {who}")


async def test_daemons_on_their_halves_from_the_start_end_up_in_a_session(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    a, b = pair_from_template(tmp_path_factory.getbasetemp(), tmp_path_factory.mktemp("halves"))
    alice, bob = a.accounts["Alice"], b.accounts["Bob"]
    ka, kb, cut = shard_of(alice), shard_of(bob), halves(alice, bob)
    if cut is None:
        pytest.skip("Alice and Bob share a shard key (one chance in 65,536)")
    pa, pb = cut
    ra, rb = Daemon(tmp_path / "ra", "RA"), Daemon(tmp_path / "rb", "RB")
    for d, p in ((a, pa), (b, pb), (ra, pa), (rb, pb)):
        carry(d, p)
    run = f"{time.monotonic_ns():x}-{next(_unique)}"
    jid_a, jid_b = alice.contact_jid, bob.contact_jid
    try:
        t0 = time.monotonic()
        in_parallel(lambda: ra.start("--storage", "sqlite"),
                    lambda: rb.start("--storage", "sqlite", "--peer", ra.p2p),
                    lambda: a.start("--peer", ra.p2p), lambda: b.start("--peer", rb.p2p))
        ca, cb = await Client(alice, a).login(), await Client(bob, b).login()
        try:
            await ca.wait(ca.peers, 20, "A linked to RA")
            await cb.wait(cb.peers, 20, "B linked to RB")
            # RA can name RB: a hand-off that finds no carrier waits a round (15 s)
            await ca.wait(lambda: relays_linked(ra), 20, "RA linked to A and RB")
            sent_a: list[str] = []
            sent_b: list[str] = []

            async def round_trip(n: int) -> None:
                sent_a.append(f"there {run} {n}")
                ca.chat(jid_b, sent_a[-1])
                await cb.wait_body(jid_a, sent_a[-1], 60)
                sent_b.append(f"back {run} {n}")
                cb.chat(jid_a, sent_b[-1])
                await ca.wait_body(jid_b, sent_b[-1], 60)

            await round_trip(0)  # at once, whatever each daemon knows of the other yet

            async def keys_known() -> bool:
                return (NO_KEYS not in await protection(ca, "Bob")
                        and NO_KEYS not in await protection(cb, "Alice"))

            await ca.wait(keys_known, 60, "each daemon learns the other's hybrid prekeys")
            keys_after = time.monotonic() - t0
            for n in range(1, 4):
                await round_trip(n)
            said = {"A": await protection(ca, "Bob"), "B": await protection(cb, "Alice")}
            assert all(any(s in v for s in IN_SESSION) for v in said.values()), said
            print(f"\nboth daemons knew each other's keys {keys_after:.1f}s after the start")
            assert ca.errors() == [] and cb.errors() == []
            # once each, in order
            assert [t for t in cb.bodies(jid_a) if run in t] == sent_a
            assert [t for t in ca.bodies(jid_b) if run in t] == sent_b
        finally:
            await ca.close()
            await cb.close()
        # each relay holds messages to its talker in a session (version 2)
        to_bob = versions_to(rb.data_dir, kb)
        assert sum(v == (2, Kind.DIRECT) for v in to_bob) >= 3, to_bob
        to_alice = versions_to(ra.data_dir, ka)
        assert sum(v == (2, Kind.DIRECT) for v in to_alice) >= 3, to_alice
    finally:
        for d in (a, b, ra, rb):
            d.stop()
