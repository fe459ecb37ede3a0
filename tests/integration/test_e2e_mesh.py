"""Twenty-four real daemons as one mixed network (docs/sharding.md, item 9).

Eight talkers hold the identities: six carry every shard, two are light nodes
(``--light``: they keep only their own envelopes and ask their peers for their shards
by prefix); sixteen relays carry halves and quarters of the shard keys and hold none
(``tests/integration/mesh_support.py`` draws who dials whom). Every link goes through
a relay on loopback that holds each chunk 20-80 ms each way (``delay_relay.py``: the
kernel here has no netem). People on different daemons write to each other from real
XMPP clients, in pairs that give every quarter of the shard keys a recipient; as the
second round of messages is written, the relay of a half with the most links whose loss
the topology survives is killed with SIGKILL.

Shown: every message reaches its recipient's client exactly once, to and from the
light talkers too; every relay's store (its SQLite file) holds only envelopes of the
shards it carries, and, once the network is quiet, every one of them that the full
talkers hold; a light talker's store holds a part of theirs and nothing else; no daemon
banned a peer.
"""

from __future__ import annotations

import asyncio
import functools
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from bridge.core.address import decode_address
from bridge.core.tags import shard_key
from tests.integration.delay_relay import DelayRelay, LinkStats
from tests.integration.e2e_support import Account, Client, Daemon, in_parallel, logged_in
from tests.integration.mesh_support import (
    Spec,
    control,
    edges,
    quarter_of,
    stored,
    table,
    topology,
)
from tests.util import wait_until

pytestmark = pytest.mark.slow

TALKERS = 8
LIGHT = 2  # of the talkers, the last ones
DELAY = (0.02, 0.08)  # one way, per link, seconds
BEFORE, AFTER = 3, 3  # messages each way of each conversation, before and after the kill


async def new_account(d: Daemon, nick: str) -> Account:
    doc = await control(d, "create_identity", nick=nick)
    return Account(nick, doc["jid"], doc["password"], doc["address"])


def quarter(a: Account) -> int:
    return quarter_of(int.from_bytes(shard_key(decode_address(a.address)), "big"))


async def people(talkers: list[Daemon]) -> tuple[list[tuple[Account, Account]],
                                                  dict[str, Daemon]]:
    """One identity a talker, more until every quarter holds one. The conversations: the
    talkers' first identities in a ring, each later one with the talker opposite; and
    each identity's daemon."""
    firsts = list(await asyncio.gather(*(new_account(d, f"{d.name}a") for d in talkers)))
    home = {a.address: d for a, d in zip(firsts, talkers, strict=True)}
    pairs = [(firsts[i], firsts[(i + 1) % len(talkers)]) for i in range(len(talkers))]
    covered = {quarter(a) for a in firsts}
    for n in range(40):
        if len(covered) == 4:
            break
        i = n % len(talkers)
        extra = await new_account(talkers[i], f"{talkers[i].name}x{n}")
        if quarter(extra) not in covered:
            covered.add(quarter(extra))
            home[extra.address] = talkers[i]
            pairs.append((extra, firsts[(i + len(talkers) // 2) % len(talkers)]))
    assert len(covered) == 4, "no identity in some quarter after 40 tries"
    return pairs, home


async def test_24_daemons_deliver_every_message_once_and_relays_keep_their_shards(
        tmp_path: Path) -> None:
    specs, seed, victim = topology(TALKERS, light=LIGHT)
    rnd = random.Random(seed)
    daemons = [Daemon(tmp_path / s.name, s.name) for s in specs]
    for d, s in zip(daemons, specs, strict=True):
        shards = ", ".join(f'"{p}"' for p in s.shards)
        d.config.write_text('[p2p]\nlisten = "127.0.0.1"\ndial_private = false\n'
                            + ("light = true\n" if s.light else f"shards = [{shards}]\n"))
    talkers = daemons[:TALKERS]
    clock: dict[str, float] = {}
    with DelayRelay() as delays:
        dial: dict[int, list[str]] = {i: [] for i in range(len(specs))}
        for a, b in edges(specs):
            port = delays.link(daemons[b].p2p_port, rnd.uniform(*DELAY))
            dial[a] += ["--peer", f"127.0.0.1:{port}"]
        t0 = time.monotonic()
        try:
            await asyncio.to_thread(in_parallel, *[
                functools.partial(d.start, "--storage", "sqlite", *dial[i], timeout=120)
                for i, d in enumerate(daemons)])
            clock["start"] = time.monotonic() - t0
            pairs, home = await people(talkers)
            await asyncio.gather(*(control(home[x.address], "add_contact", who=x.address,
                                           link=y.address, name=y.nick)
                                   for a, b in pairs for x, y in ((a, b), (b, a))))
            everyone = list({a.address: a for p in pairs for a in p}.values())
            clients = {a.address: Client(a, home[a.address]) for a in everyone}
            async with logged_in(*clients.values()):
                sent: dict[tuple[str, str], list[str]] = {}

                def write(first: int, count: int) -> None:
                    for a, b in pairs:
                        for x, y in ((a, b), (b, a)):
                            for k in range(first, first + count):
                                text = f"{x.nick} to {y.nick} #{k}"
                                clients[x.address].chat(y.contact_jid, text)
                                sent.setdefault((x.address, y.address), []).append(text)

                def arrived() -> bool:
                    return all(set(texts) <= set(clients[to].bodies(frm + "@p2p.localhost"))
                               for (frm, to), texts in sent.items())

                t1 = time.monotonic()
                write(0, BEFORE)
                await wait_until(arrived, 120, 0.05, "the first messages at their clients")
                clock["before"] = time.monotonic() - t1
                t2 = time.monotonic()
                write(BEFORE, AFTER)
                await asyncio.to_thread(daemons[victim].stop, signal.SIGKILL)
                await wait_until(arrived, 120, 0.05, "the messages sent as a relay was killed")
                clock["after"] = time.monotonic() - t2

                t3 = time.monotonic()
                live = [i for i in range(TALKERS, len(specs)) if i != victim]
                settled = await wait_until(
                    lambda: converged(daemons, specs, live), 120, 0.5,
                    "every relay holding exactly the talkers' envelopes of its shards")
                assert settled is not None
                figures, envelopes = settled
                clock["converge"] = time.monotonic() - t3
                # not vacuous: every quarter has a recipient, so every relay has envelopes
                # to keep; and the killed relay held some when it went
                assert all(expected for _, expected in figures.values()), figures
                assert figures[victim][0], "the killed relay held nothing"
                for i, s in enumerate(specs):  # each light talker kept a part: its own
                    if s.light:
                        assert 0 < figures[i][0] < envelopes, (s.name, figures[i])
                # everything has settled: what arrived twice would be here by now
                for (frm, to), texts in sent.items():
                    got = Counter(clients[to].bodies(frm + "@p2p.localhost"))
                    assert got == Counter(texts), (frm, to, got)
                for c in clients.values():
                    assert not c.errors(), [str(m) for m in c.errors()]
            for d in (*talkers, *(daemons[i] for i in live)):
                errors = (await control(d, "status"))["recent_errors"]
                assert not [e for e in errors if "banned" in e], (d.name, errors)
        finally:
            await asyncio.to_thread(in_parallel, *[d.stop for d in daemons])
        clock["total"] = time.monotonic() - t0
    report(specs, victim, figures, envelopes, sent, clock, list(delays.links.values()))


def converged(daemons: list[Daemon], specs: list[Spec],
              live: list[int]) -> tuple[dict[int, tuple[int, int]], int] | None:
    """Relay -> (stored, expected), and how many envelopes the talkers hold, once every
    live talker holds the same envelopes and every live relay exactly those of them in
    its shards, and every light talker a part of what the talkers hold; None before. An
    envelope outside a relay's shards, in any relay's store, the killed one's too, fails
    at once."""
    talker_sets = [stored(d.data_dir) for d, s in zip(daemons, specs, strict=True)
                   if s.talker and not s.light]
    union: dict[bytes, int] = {}
    for held in talker_sets:
        union.update(held)
    figures: dict[int, tuple[int, int]] = {}
    settled = all(held.keys() == union.keys() for held in talker_sets)
    for i, s in enumerate(specs):
        if s.light:  # a part of what the full talkers hold, nothing else, once its own
            held = stored(daemons[i].data_dir)  # envelopes (sent last) have spread
            figures[i] = (len(held), len(union))
            if not held.keys() <= union.keys():
                settled = False
        if s.talker:
            continue
        held = stored(daemons[i].data_dir)
        outside = [sh for sh in held.values() if not s.carries(sh)]
        assert not outside, f"{s.name} ({', '.join(s.shards)}) stores shards {outside}"
        expected = {e for e, sh in union.items() if s.carries(sh)}
        figures[i] = (len(held), len(expected))
        if i in live and held.keys() != expected:
            settled = False
    return (figures, len(union)) if settled else None


def report(specs: list[Spec], victim: int, figures: dict[int, tuple[int, int]], total: int,
           sent: dict[tuple[str, str], list[str]], clock: dict[str, float],
           links: list[LinkStats]) -> None:
    messages = sum(len(t) for t in sent.values())
    talkers = sum(1 for s in specs if s.talker)
    print("\n" + table([[
        f"{len(specs)} ({talkers} talkers, {len(specs) - talkers} relays)",
        f"{len(links)} ({min(x.delay for x in links) * 1000:.0f}-"
        f"{max(x.delay for x in links) * 1000:.0f} ms each way)",
        messages, f"{messages}/{messages}", specs[victim].name,
        f"{clock['start']:.1f}", f"{clock['before']:.1f}", f"{clock['after']:.1f}",
        f"{clock['converge']:.1f}", f"{clock['total']:.1f}"]],
        ["daemons", "links", "messages", "delivered once", "killed",
         "start s", "first delivered s", "after the kill s", "stores settled s", "wall s"]))
    rows = []
    for i, (held, expected) in sorted(figures.items()):
        s = specs[i]
        if s.light:
            rows.append([s.name + " (light)", "its own", sum(1 for e in edges(specs) if i in e),
                         held, "-", "-", f"{held / total:.0%}" if total else "-"])
            continue
        share = sum(p.end - p.start for p in s.prefixes) / 65536
        rows.append([s.name + (" (killed)" if i == victim else ""), ", ".join(s.shards),
                     sum(1 for e in edges(specs) if i in e), held, expected,
                     f"{share:.0%}", f"{expected / total:.0%}" if total else "-"])
    print(table(rows, ["relay", "shards", "links", "stored", "expected", "share of keys",
                       f"share of the {total} envelopes"]))
