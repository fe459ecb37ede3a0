"""Gossip benchmarks, one run: ``.venv/bin/python -m tests.bench.bench_gossip``.

1. 50 nodes on loopback (random sparse graph): convergence time p50/p95 per
   envelope, and bytes sent per delivered envelope per node as a ratio to the
   envelope size (WebSocket headers included; anti-entropy traffic included).
2. Reconciliation of two 100,000-envelope stores differing by 10/100/1,000:
   bytes both ways, round trips, time.
3. RAM store: bytes of memory per stored 1 KiB envelope, ratio to its size.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc

from bridge.core.reconcile import Reconciler, make_key
from bridge.store.index import SortedIndex
from bridge.store.memory import MemoryStore
from tests.gossip_support import make_envelope, start_nodes, stop_all, wait_all


async def bench_network(n: int = 50, count: int = 100, degree_extra: int = 25) -> None:
    nodes = await start_nodes(n, anti_entropy_interval=2.0)
    rnd = random.Random(7)
    edges = {(i, (i + 1) % n) for i in range(n)}
    while len(edges) < n + degree_extra:
        a, b = rnd.sample(range(n), 2)
        if (b, a) not in edges:
            edges.add((a, b))
    for a, b in edges:
        nodes[a].add_peer(f"127.0.0.1:{nodes[b].port}")
    deg = [0] * n
    for a, b in edges:
        deg[a] += 1
        deg[b] += 1
    await wait_all(nodes, lambda nd: len(nd.active_conns()) >= deg[nodes.index(nd)], 30)
    base = sum(c.wire_out for nd in nodes for c in nd.conns)
    arrivals: dict[bytes, list[float]] = {}
    for nd in nodes:
        nd.subscribe(lambda e: arrivals.setdefault(e.id, []).append(time.perf_counter()))
    now = int(time.time())
    envs = [make_envelope(now, bucket=1024) for _ in range(count)]
    starts = {}
    for e in envs:
        starts[e.id] = time.perf_counter()
        await rnd.choice(nodes).publish(e.raw)
        await asyncio.sleep(0.01)
    ids = {e.id for e in envs}
    await wait_all(nodes, lambda nd: all(i in nd.store for i in ids), 60)
    sent = sum(c.wire_out for nd in nodes for c in nd.conns) - base
    conv = sorted(max(arrivals[i]) - starts[i] for i in ids)
    size = len(envs[0].raw)
    per = sent / (count * (n - 1))
    print(f"\n## {n} nodes, {len(edges)} links, {count} envelopes of {size} bytes\n")
    print("| metric | value |\n|---|---|")
    print(f"| convergence p50 | {statistics.median(conv) * 1000:.1f} ms |")
    print(f"| convergence p95 | {conv[int(0.95 * len(conv)) - 1] * 1000:.1f} ms |")
    print(f"| bytes sent per delivered envelope per node | {per:.0f} |")
    print(f"| ratio to envelope size (target <= 1.3) | {per / size:.3f} |")
    await stop_all(nodes)


def bench_reconcile(n: int = 100_000) -> None:
    rnd = random.Random(1)
    keys = [
        make_key(rnd.randrange(1 << 16), rnd.randrange(1 << 31, (1 << 31) + 604800),
                 rnd.randbytes(32)) for _ in range(n)
    ]
    print(f"\n## reconciliation, stores of {n:,} envelopes\n")
    print("| differences | bytes | bytes per difference | round trips | time |")
    print("|---|---|---|---|---|")
    for diff in (0, 10, 100, 1000):
        a, b = SortedIndex(keys), SortedIndex(keys)
        for k in range(diff):
            (a if k % 2 else b).add(rnd.randrange(1 << 16),
                                    rnd.randrange(1 << 31, (1 << 31) + 604800), rnd.randbytes(32))
        t = time.perf_counter()
        init = Reconciler(a, initiator=True)
        msg: bytes | None = init.initiate()
        total, rounds = 0, 0
        while msg is not None:
            reply = Reconciler(b, initiator=False).receive(msg)
            assert reply is not None
            total += len(msg) + len(reply)
            rounds += 1
            msg = init.receive(reply)
        dt = time.perf_counter() - t
        assert len(init.have) + len(init.need) == diff
        per = f"{total / diff:.0f}" if diff else "-"
        kib = f"{total:,} ({total / 1024:.1f} KiB)"
        print(f"| {diff} | {kib} | {per} | {rounds} | {dt * 1000:.0f} ms |")


def bench_ram(count: int = 20_000) -> None:
    now = int(time.time())
    envs = [
        make_envelope(now, bucket=1024, ttl=rnd_ttl)
        for rnd_ttl in (random.randrange(600, 86400) for _ in range(count))
    ]
    raws = [e.raw for e in envs]
    size = len(raws[0])
    gc.collect()
    tracemalloc.start()
    store = MemoryStore()
    before = tracemalloc.get_traced_memory()[0]
    for e in envs:
        store.add(e, now)
    del envs
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    store.index.fingerprint(0, len(store))  # reconciliation's prefix sums, built
    with_sums = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    # the raw bytes objects were allocated before tracing: count them explicitly
    raw_cost = sum(sys.getsizeof(r) for r in raws) / count
    per = (after - before) / count + raw_cost
    per_sums = (with_sums - before) / count + raw_cost
    print(f"\n## RAM store, {count:,} envelopes of {size} bytes (1 KiB padding bucket)\n")
    print("| state | bytes per envelope | ratio to size (target <= 1.3) |\n|---|---|---|")
    print(f"| stored | {per:.0f} | {per / size:.3f} |")
    print(f"| stored, prefix sums built | {per_sums:.0f} | {per_sums / size:.3f} |")


async def main() -> None:
    print("# bench_gossip", time.strftime("%Y-%m-%d %H:%M"), f"(pid {os.getpid()})")
    bench_reconcile()
    bench_ram()
    await bench_network()


if __name__ == "__main__":
    asyncio.run(main())
