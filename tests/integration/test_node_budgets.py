"""Budgets between two honest nodes on loopback: a peer that asks for much more than one
link's byte-capped queue gets all of it, at the pace it reads, without being dropped (a
light peer's WATCH_SHARD: tests/integration/test_node_light.py)."""

from __future__ import annotations

import time

from bridge.net.node import Node
from tests.gossip_support import fast_config, has_all, make_envelope, stop_all, wait_all

MiB = 1024 * 1024


async def test_catching_up_on_more_than_a_queue_holds_is_served_as_it_reads():
    a = Node(fast_config(memory_budget=32 * MiB))
    await a.start()
    b: Node | None = None
    try:
        assert a.memory.link_queue_bytes == 512 * 1024
        now = int(time.time())
        envs = [make_envelope(now, bucket=65536) for _ in range(120)]  # 7.9 MB
        for e in envs:
            await a.publish(e.raw)
        b = Node(fast_config(bootstrap=[f"127.0.0.1:{a.port}"]))
        await b.start()
        peak = 0

        def caught_up(node: Node) -> bool:
            nonlocal peak
            peak = max([peak, *(c.queued for c in a.conns)])
            return has_all({e.id for e in envs})(node)

        await wait_all([b], caught_up, 30)
        assert a.outbound.dropped == 0 and not a.bans and not b.bans
        assert len(a.active_conns()) == 1  # the one link, never dropped
        assert peak <= a.memory.link_queue_bytes
    finally:
        await stop_all([n for n in (a, b) if n is not None])

