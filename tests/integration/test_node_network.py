"""Many nodes on loopback: spreading, restart catch-up, partition healing, light mode."""

from __future__ import annotations

import asyncio
import random
import time

from bridge.net.node import Node
from tests.gossip_support import (
    fast_config,
    has_all,
    linked,
    make_envelope,
    start_nodes,
    stop_all,
    wait_all,
)


def sparse_edges(n: int, extra: int, seed: int) -> set[tuple[int, int]]:
    """A ring (so the graph is connected) plus a few random chords."""
    rnd = random.Random(seed)
    edges = {(i, (i + 1) % n) for i in range(n)}
    while len(edges) < n + extra:
        a, b = rnd.sample(range(n), 2)
        if (b, a) not in edges:
            edges.add((a, b))
    return edges


def connect(nodes: list[Node], edges: set[tuple[int, int]]) -> None:
    for a, b in edges:
        nodes[a].add_peer(f"127.0.0.1:{nodes[b].port}")


def degrees(n: int, edges: set[tuple[int, int]]) -> list[int]:
    d = [0] * n
    for a, b in edges:
        d[a] += 1
        d[b] += 1
    return d


async def test_every_envelope_reaches_every_full_node_in_a_sparse_topology():
    n = 22
    nodes = await start_nodes(n, anti_entropy_interval=30)  # spreading alone, no anti-entropy
    try:
        edges = sparse_edges(n, 6, seed=3)
        connect(nodes, edges)
        deg = degrees(n, edges)
        await wait_all(nodes, lambda node: len(node.active_conns()) >= deg[nodes.index(node)], 10)
        now = int(time.time())
        envs = [make_envelope(now, bucket=256) for _ in range(30)]
        rnd = random.Random(5)
        for env in envs:
            await rnd.choice(nodes).publish(env.raw)
        await wait_all(nodes, has_all({e.id for e in envs}), 20)
        # no body crossed any link twice: each node received each body once at most
        for node in nodes:
            assert len(node.store) == 30
    finally:
        await stop_all(nodes)


async def test_killed_node_catches_up_by_anti_entropy_after_restart():
    nodes = await start_nodes(5)
    try:
        edges = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)}
        connect(nodes, edges)
        await wait_all(nodes, linked(2), 10)
        now = int(time.time())
        first = [make_envelope(now) for _ in range(20)]
        for env in first[:10]:
            await nodes[0].publish(env.raw)
        victim = nodes[2]
        port = victim.port
        await victim.stop(graceful=False)  # as a crash: no goodbye, RAM store gone
        for env in first[10:]:
            await nodes[0].publish(env.raw)
        await wait_all([nodes[i] for i in (0, 1, 3, 4)], has_all({e.id for e in first}), 10)
        reborn = Node(fast_config(port=port, bootstrap=[f"127.0.0.1:{nodes[1].port}"]))
        await reborn.start()
        nodes[2] = reborn
        await wait_all([reborn], has_all({e.id for e in first}), 15)
    finally:
        await stop_all(nodes)


async def test_partition_heals():
    nodes = await start_nodes(8)
    try:
        left, right = nodes[:4], nodes[4:]
        connect(nodes, {(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (6, 7)})
        await wait_all([nodes[1], nodes[2], nodes[5], nodes[6]], linked(2), 10)
        now = int(time.time())
        lenvs = [make_envelope(now) for _ in range(15)]
        renvs = [make_envelope(now) for _ in range(15)]
        for env in lenvs:
            await left[0].publish(env.raw)
        for env in renvs:
            await right[3].publish(env.raw)
        await wait_all(left, has_all({e.id for e in lenvs}), 10)
        await wait_all(right, has_all({e.id for e in renvs}), 10)
        assert not any(e.id in right[0].store for e in lenvs)
        nodes[3].add_peer(f"127.0.0.1:{nodes[4].port}")  # the partition heals
        everything = {e.id for e in lenvs + renvs}
        await wait_all(nodes, has_all(everything), 15)
    finally:
        await stop_all(nodes)


async def test_light_node_keeps_only_its_tags():
    full_a, full_b = await start_nodes(2)
    light = Node(fast_config(light=True, bootstrap=[f"127.0.0.1:{full_b.port}"]))
    await light.start()
    try:
        mine = b"M" * 16
        light.watch_shards([int.from_bytes(mine[:2], "big")], lambda t: t == mine)
        full_a.add_peer(f"127.0.0.1:{full_b.port}")
        await wait_all([full_b], linked(2), 10)  # the light node and full_a
        now = int(time.time())
        old = make_envelope(now, tag=mine)
        await full_a.publish(old.raw)  # before: found by reconciling the prefix
        await wait_all([light], has_all({old.id}), 10)
        new, other = make_envelope(now, tag=mine), make_envelope(now)
        await full_a.publish(other.raw)
        await full_a.publish(new.raw)
        await wait_all([light], has_all({new.id}), 10)
        await wait_all([full_b], has_all({other.id}), 10)
        assert other.id not in light.store
        # its own envelopes go out through the full node
        sent = make_envelope(now)
        await light.publish(sent.raw)
        await wait_all([full_a], has_all({sent.id}), 10)
    finally:
        await stop_all([full_a, full_b, light])


async def test_peer_exchange_finds_more_peers():
    a, b = await start_nodes(2)
    c = Node(fast_config(target_peers=2, bootstrap=[f"127.0.0.1:{b.port}"]))
    await c.start()
    try:
        a.add_peer(f"127.0.0.1:{b.port}")
        await wait_all([b], linked(1), 5)
        await wait_all([c], linked(2), 10)  # learned a's address from b
        assert {p["address"] for p in c.peers()} >= {f"127.0.0.1:{a.port}"}
    finally:
        await stop_all([a, b, c])


async def test_reconnects_with_backoff_after_the_peer_returns():
    a, b = await start_nodes(2)
    try:
        a.add_peer(f"127.0.0.1:{b.port}")
        await wait_all([a], linked(1), 5)
        port = b.port
        await b.stop(graceful=False)
        await a.wait_for(lambda: not a.active_conns(), 5)
        await asyncio.sleep(0)  # a retries while b is down
        b2 = Node(fast_config(port=port))
        await b2.start()
        await wait_all([a, b2], linked(1), 10)
        await b2.stop()
    finally:
        await stop_all([a, b])
