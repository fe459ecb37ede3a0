"""What a light node costs, one run: ``.venv/bin/python -m tests.bench.bench_light``.

A full node on loopback holds ``N`` envelopes of 1 KiB spread over random shard keys,
20 of them under the light node's own tag. A light node joins, asking at depth 0 (the
full node's own: everything), 3 and 6: bytes it received and bodies it read before it
read every body under its prefix, against the full node's store; then the bytes both
ways of one WATCH_SHARD round with nothing new (the reconciliation of equal sets), and
after 50 new envelopes were stored (the light node had them announced already: the
round finds nothing to fetch; the bodies under its prefix are counted).
"""

from __future__ import annotations

import asyncio
import os
import time

from bridge.core.shards import of_key
from bridge.net.node import Node
from tests.gossip_support import fast_config, make_envelope, stop_all

N = 4000
KEY = 0xA1B2


def received(node: Node) -> int:
    return sum(c.link.bytes_in for c in node.conns)


def both_ways(node: Node) -> int:
    return sum(c.link.bytes_in + c.link.bytes_out for c in node.conns)


def under(full: Node, depth: int) -> int:
    p = of_key(KEY, depth)
    return sum(1 for k in full.store.index.iter_keys()
               if p.holds(int.from_bytes(k[:2], "big")))


async def one(depth: int, full: Node, tag: bytes, mine: set[bytes]) -> None:
    light = Node(fast_config(light=True, light_depth=depth, anti_entropy_interval=1,
                             bootstrap=[f"127.0.0.1:{full.port}"]))
    await light.start()
    try:
        t0 = time.monotonic()
        light.watch_shards([KEY], lambda t: t == tag)
        await light.wait_for(lambda: all(i in light.store for i in mine), 120)
        expected = under(full, depth)  # every body under the prefix read
        await light.wait_for(lambda: len(light.light.ids) >= expected, 120)
        took = time.monotonic() - t0
        first = received(light)
        (conn,) = light.active_conns()
        start = both_ways(light)
        light.light.ask(conn, time.monotonic())
        await asyncio.sleep(0.5)
        idle = both_ways(light) - start
        now = int(time.time())
        for _ in range(50):
            await full.publish(make_envelope(now, bucket=1024).raw)
        await asyncio.sleep(1.0)
        start = both_ways(light)
        light.light.ask(conn, time.monotonic())
        await asyncio.sleep(0.5)
        print(f"| {depth} | {len(light.light.ids):,} of {len(full.store):,} | "
              f"{first / 1e6:.2f} MB ({first / full.store.total_bytes:.1%} of the store) | "
              f"{took:.1f} s | {idle:,} B | {both_ways(light) - start:,} B |")
    finally:
        await stop_all([light])


async def main() -> None:
    full = Node(fast_config(anti_entropy_interval=3600))
    await full.start()
    try:
        now = int(time.time())
        tag = KEY.to_bytes(2, "big") + os.urandom(14)
        mine = set()
        for i in range(N):
            e = make_envelope(now, bucket=1024, tag=tag if i < 20 else None)
            if i < 20:
                mine.add(e.id)
            await full.publish(e.raw)
        print(f"full node: {len(full.store):,} envelopes, {full.store.total_bytes / 1e6:.2f} MB")
        print("| depth | ids read | received until caught up | time | a round, nothing new |"
              " a round, 50 new in the store |")
        print("|---:|---:|---:|---:|---:|---:|")
        for depth in (0, 3, 6):
            await one(depth, full, tag, mine)
    finally:
        await stop_all([full])


if __name__ == "__main__":
    asyncio.run(main())
