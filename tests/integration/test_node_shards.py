"""Real nodes on loopback carrying parts of the network (docs/sharding.md, items 1-4):
each stores only its shards, a message to a shard its sender does not carry still
arrives through a node that carries everything, and a body outside a node's
prefixes costs the peer that sent it its link."""

from __future__ import annotations

import os
import time

import aiohttp

from bridge.core import shards
from bridge.core.gossip_wire import ByeReason, FrameType, Have, Hello, Want, parse
from bridge.core.gossip_wire import encode as enc
from bridge.net.node import Node
from tests.gossip_support import LOW_BITS, fast_config, has_all, linked, make_envelope, wait_all
from tests.gossip_support import stop_all as stop_nodes

LOW, HIGH = shards.prefix(0, 1), shards.prefix(1, 1)


def in_shard(key: int, now: int):
    return make_envelope(now, tag=key.to_bytes(2, "big") + os.urandom(14))


def stored_shards(node: Node) -> set[int]:
    return {int.from_bytes(k[:2], "big") for k in node.store.index.iter_keys()}


async def test_each_node_stores_its_shards_and_a_full_node_carries_across():
    full = Node(fast_config())
    low = Node(fast_config(shards=(LOW,)))
    high = Node(fast_config(shards=(HIGH,)))
    sender = Node(fast_config(shards=(HIGH,)))  # writes to a recipient in shard 0
    nodes = [full, low, high, sender]
    for n in nodes:
        await n.start()
    try:
        now = int(time.time())
        before_low, before_high = in_shard(0x0100, now), in_shard(0x8100, now)
        for e in (before_low, before_high):  # held before the half node links: reconciliation
            await full.publish(e.raw)
        # sender - high - full - low, and sender - full: the sender never meets ``low``
        for a, b in ((sender, full), (sender, high), (high, full), (low, full)):
            a.add_peer(f"127.0.0.1:{b.port}")
        await wait_all([full], linked(3), 10)
        await wait_all([sender, high], linked(2), 10)
        await wait_all([low], linked(1), 10)
        (link,) = [c.link for c in full.active_conns() if c.link.peer_shards == (LOW,)]
        assert link.overlaps() == [LOW]  # the full node's view of the half node's HELLO

        to_shard0 = in_shard(0x1234, now)  # the recipient's shard, not the sender's
        to_shard1 = in_shard(0x9234, now)
        await sender.publish(to_shard0.raw)
        await sender.publish(to_shard1.raw)
        from_high = in_shard(0xA000, now)
        await high.publish(from_high.raw)
        from_low = in_shard(0x0042, now)
        await low.publish(from_low.raw)

        lows = {before_low.id, to_shard0.id, from_low.id}
        highs = {before_high.id, to_shard1.id, from_high.id}
        await wait_all([full], has_all(lows | highs), 20)
        await wait_all([low], has_all(lows), 20)  # to_shard0 went sender → full → low
        await wait_all([high], has_all(highs), 20)
        await wait_all([sender], has_all(highs), 20)
        # A mark sent after everything else, on the same links: what arrives before it and
        # was going to arrive has; a body outside ``low``'s half would have cut its link
        mark = in_shard(0x0777, now)
        await full.publish(mark.raw)
        await wait_all([low], has_all({mark.id}), 20)
        lows.add(mark.id)

        assert {k[10:] for k in low.store.index.iter_keys()} == lows
        assert {k[10:] for k in high.store.index.iter_keys()} == highs
        assert all(LOW.holds(s) for s in stored_shards(low))
        assert all(HIGH.holds(s) for s in stored_shards(high))
        # the sender keeps its own envelope for shard 0 and takes nothing else of it
        assert stored_shards(sender) - {0x1234} <= set(range(0x8000, 0x10000))
        assert len(full.store) == len(lows | highs)
        for n in nodes:
            assert not [e for e in n.recent_errors if "banned" in e], n.recent_errors
            assert len(n.active_conns()) == {full: 3, low: 1, high: 2, sender: 2}[n]
    finally:
        await stop_nodes(nodes)


async def test_a_body_outside_the_nodes_prefixes_costs_the_peer_its_link():
    node = Node(fast_config(shards=(LOW,)))
    await node.start()
    try:
        now = int(time.time())
        outside, inside = in_shard(0xC001, now), in_shard(0x4001, now)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{node.port}/p2p")
            await ws.send_bytes(enc(Hello(2, LOW_BITS, now, os.urandom(16), False, "")))
            hello = parse(await ws.receive_bytes(timeout=5))
            assert isinstance(hello, Hello) and hello.shards == (LOW,)
            # a node asks for what it is offered (an id says nothing of its shard) ...
            await ws.send_bytes(enc(Have((inside.id, outside.id))))
            asked: set[bytes] = set()
            while len(asked) < 2:
                msg = parse(await ws.receive_bytes(timeout=5))
                if isinstance(msg, Want):
                    asked.update(msg.ids)
            await ws.send_bytes(bytes([FrameType.ENVELOPE]) + inside.raw)
            await ws.send_bytes(bytes([FrameType.ENVELOPE]) + outside.raw)
            reason = None
            async for m in ws:  # ... and the body shows it: a protocol violation
                if m.type == aiohttp.WSMsgType.BINARY and m.data[0] == FrameType.BYE:
                    reason = ByeReason(m.data[1])
            assert reason is ByeReason.PROTOCOL
        await node.wait_for(lambda: inside.id in node.store, 5)
        assert outside.id not in node.store
        assert any("ShardError" in e for e in node.recent_errors), node.recent_errors
    finally:
        await stop_nodes([node])
