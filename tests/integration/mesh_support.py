"""A mixed network of real daemons for ``test_e2e_mesh.py``: who carries what, who dials
whom, and what each daemon's store holds.

Talkers carry every shard (``0/0``: a node with identities keeps everything until lookup
and hand-off exist, docs/sharding.md), or are light nodes (``--light``: they carry
nothing, ask for their shards and relay nothing); relays carry halves and quarters of the
16-bit shard key space and have no identity. The topology is sparse — a talker dials one
relay of each half (a light talker two: it passes nothing on, so it keeps a carrier of
each half when one goes), a relay dials two or three nodes that share some of its shards
(never a light one) — and is drawn from a seed, the first one (from 0) under which
every quarter's carriers still join every talker, and every relay still reaches a talker
over each prefix it carries, after any one relay is gone. Stores are read from each
daemon's SQLite file.
"""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.control import ControlClient, Runtime
from bridge.core.address import decode_address
from bridge.core.shards import Prefix, of_key, overlap, parse_prefix, prefix, shard_of_raw
from bridge.core.tags import shard_key

if TYPE_CHECKING:
    from tests.integration.e2e_support import Account, Daemon

EVERYTHING = "0/0"
RELAY_SHARDS: tuple[tuple[str, ...], ...] = (
    *[("0/1",)] * 3, *[("1/1",)] * 3,  # halves
    *[(f"{q}/2",) for q in range(4) for _ in range(2)],  # quarters, two of each
    ("0/2", "3/2"), ("1/2", "2/2"),  # two quarters apart
)
QUARTERS = tuple(prefix(q, 2) for q in range(4))


@dataclass
class Spec:
    """One daemon of the network: its name and the prefixes it carries."""

    name: str
    shards: tuple[str, ...]
    dials: list[int] = field(default_factory=list)  # indexes of the nodes it dials
    light: bool = False  # a light talker: stores and relays nothing for others

    @property
    def prefixes(self) -> tuple[Prefix, ...]:
        return tuple(parse_prefix(s) for s in self.shards)

    @property
    def talker(self) -> bool:
        return self.shards == (EVERYTHING,)

    def carries(self, shard: int) -> bool:
        return any(p.holds(shard) for p in self.prefixes)

    def shares(self, other: Spec) -> bool:
        return any(overlap(a, b) for a in self.prefixes for b in other.prefixes)


def edges(specs: list[Spec]) -> list[tuple[int, int]]:
    return [(a, b) for a, s in enumerate(specs) for b in s.dials]


def _joined(specs: list[Spec], quarter: Prefix, gone: int | None) -> bool:
    """Whether the carriers of ``quarter`` (but ``gone``) join every talker and every
    relay carrying ``quarter`` to a talker, over links both ends carry it on; a light
    talker joins through a link of its own to one of them (it passes nothing on)."""
    inside = {i for i, s in enumerate(specs) if i != gone and not s.light
              and any(p.contains(quarter) or quarter.contains(p) for p in s.prefixes)}
    links = {i: set[int]() for i in inside}
    for a, b in edges(specs):
        if a in inside and b in inside:
            links[a].add(b)
            links[b].add(a)
    start = next(i for i in inside if specs[i].talker)
    seen, todo = {start}, [start]
    while todo:
        for j in links[todo.pop()] - seen:
            seen.add(j)
            todo.append(j)
    near = {j for a, b in edges(specs) for i, j in ((a, b), (b, a)) if i in seen}
    return seen == inside and all(i in near for i, s in enumerate(specs) if s.light)


def topology(talkers: int, seed: int | None = None,
             light: int = 0) -> tuple[list[Spec], int, int]:
    """The network's daemons (talkers first, the last ``light`` of them light) with whom
    each dials, the seed drawn, and the relay to kill: the relay of a half with the most
    links whose loss leaves every quarter's carriers joined."""
    for s in range(1000) if seed is None else (seed,):
        rnd = random.Random(s)
        specs = [Spec(f"t{i}", (EVERYTHING,), light=i >= talkers - light)
                 for i in range(talkers)]
        specs += [Spec(f"r{i}", shards) for i, shards in enumerate(RELAY_SHARDS)]
        relays = range(talkers, len(specs))
        halves = {h: [r for r in relays if specs[r].shards == (h,)] for h in ("0/1", "1/1")}
        for i in range(talkers):  # one relay of each half; a light talker two
            for h in halves:
                if specs[i].light:
                    specs[i].dials += rnd.sample(halves[h], 2)
                else:
                    specs[i].dials.append(rnd.choice(halves[h]))
        for ring in halves.values():  # the relays of a half in a ring
            for a, b in zip(ring, ring[1:] + ring[:1], strict=True):
                specs[a].dials.append(b)
        for r in relays:  # and more, to two or three nodes with shards in common
            peers = [j for j in range(len(specs)) if j != r and specs[r].shares(specs[j])
                     and not specs[j].light
                     and r not in specs[j].dials and j not in specs[r].dials]
            specs[r].dials += rnd.sample(peers, rnd.choice((2, 3)) - len(specs[r].dials))
        if not all(_joined(specs, q, None) for q in QUARTERS):
            continue
        degree = Counter(n for e in edges(specs) for n in e)
        spares = [r for r in (*halves["0/1"], *halves["1/1"])
                  if all(_joined(specs, q, r) for q in QUARTERS)]
        if spares:
            return specs, s, max(spares, key=lambda r: (degree[r], -r))
    raise AssertionError("no seed gives a topology that survives the loss of a relay")


def stored(data_dir: Path) -> dict[bytes, int]:
    """Envelope id -> shard key, for every envelope in a daemon's SQLite store (read only;
    the daemon may be running, or killed)."""
    db = sqlite3.connect(f"file:{data_dir / 'envelopes.db'}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT id, raw FROM envelopes").fetchall()
    finally:
        db.close()
    return {bytes(i): shard_of_raw(bytes(raw)) for i, raw in rows}


def quarter_of(shard: int) -> int:
    return shard >> 14


def table(rows: Iterable[Iterable[object]], head: list[str]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


async def control(d: Daemon, verb: str, **args: str) -> Any:
    """A control call to a running daemon (what ``paranoim`` commands use)."""
    runtime = Runtime.read(d.data_dir)
    assert runtime is not None, f"daemon {d.name} has no runtime file"
    return await ControlClient(runtime).call(verb, **args)


def shard_of(a: Account) -> int:
    """The account's 16-bit shard key."""
    return int.from_bytes(shard_key(decode_address(a.address)), "big")


def halves(a: Account, b: Account) -> tuple[Prefix, Prefix] | None:
    """The prefixes of two accounts' shard keys cut at the first bit where they differ
    (the two halves when it is the first): each carries one and not the other. None
    when both share a shard key (one chance in 65,536)."""
    ka, kb = shard_of(a), shard_of(b)
    if ka == kb:
        return None
    depth = 17 - (ka ^ kb).bit_length()
    return of_key(ka, depth), of_key(kb, depth)


def carry(d: Daemon, p: Prefix) -> None:
    """``d`` carries ``p`` alone from its next start."""
    d.config.write_text(f'[p2p]\nlisten = "127.0.0.1"\nshards = ["{p}"]\n')


async def relays_linked(relay: Daemon, links: int = 2) -> bool:
    """``relay`` has ``links`` active links: it can name the other relay's part."""
    peers = (await control(relay, "status"))["peers"]
    return sum(1 for p in peers if p.get("state") == "active") >= links
