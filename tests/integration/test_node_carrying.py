"""A real node choosing its shards from its intake (bridge/net/carrying.py): over its
budget it narrows to the half of its own shard key, its peers hear the new HELLO and
stop sending it the other half; quiet, it widens again and reconciliation fetches
what it did not carry. The clock of the decision is the test's; the links are real."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from bridge.core import shards
from bridge.core.depth import DepthRule
from bridge.net.carrying import Carrying
from bridge.net.node import Node
from tests.daemonproc import Paranoim
from tests.gossip_support import fast_config, has_all, linked, make_envelope, wait_all
from tests.gossip_support import stop_all as stop_nodes

LOW, HIGH = shards.prefix(0, 1), shards.prefix(1, 1)
OWN = 0x8001  # the node's identity's shard key: in the high half


def in_shard(key: int, now: int):
    return make_envelope(now, tag=key.to_bytes(2, "big") + os.urandom(14))


def peers_see(node: Node, prefixes: tuple[shards.Prefix, ...]):
    port = node.port

    def check(other: Node) -> bool:
        return any(c.link.peer is not None and c.link.peer.listen.endswith(f":{port}")
                   and c.link.peer_shards == prefixes for c in other.active_conns())
    return check


async def test_over_budget_a_node_narrows_to_its_half_and_widens_again_when_quiet():
    a, b, busy = Node(fast_config()), Node(fast_config()), Node(fast_config())
    nodes = [a, b, busy]
    for n in nodes:
        await n.start()
    clock = [1000.0]
    carrying = Carrying(busy, DepthRule(budget=50_000, floor=2, settle=60),
                        keys=lambda: (OWN,), clock=lambda: clock[0], interval=3600)
    carrying.start()
    try:
        a.add_peer(f"127.0.0.1:{b.port}")
        busy.add_peer(f"127.0.0.1:{a.port}")
        busy.add_peer(f"127.0.0.1:{b.port}")
        await wait_all([busy], linked(2), 10)
        now = int(time.time())
        first = [in_shard(k << 8, now) for k in range(0, 256, 16)]  # both halves
        for e in first:
            await a.publish(e.raw)
        await wait_all([busy], has_all({e.id for e in first}), 20)
        assert carrying.intake.per_day(clock[0]) == 0  # no time measured yet
        clock[0] += 61
        assert carrying.intake.per_day(clock[0]) > 50_000
        assert carrying.carriers(HIGH) == 2  # both peers carry everything

        assert carrying.step()
        assert busy.config.shards == (HIGH,) and carrying.depth == 1
        await wait_all([a, b], peers_see(busy, (HIGH,)), 20)  # new links, new HELLO
        low, high = in_shard(0x0300, now), in_shard(0x8300, now)
        await a.publish(low.raw)
        await a.publish(high.raw)
        mark = in_shard(0x8777, now)  # sent after both on the same links
        await a.publish(mark.raw)
        await wait_all([busy], has_all({high.id, mark.id}), 20)
        assert low.id not in busy.store  # the half it no longer carries is not sent to it
        assert not carrying.step()  # within the hour it settles: no change

        clock[0] += 7 * 3600  # a quiet seven hours: nothing measured in the window
        assert carrying.step()
        assert busy.config.shards == shards.EVERYTHING and carrying.depth == 0
        await wait_all([a, b], peers_see(busy, shards.EVERYTHING), 20)
        await wait_all([busy], has_all({low.id}), 20)  # reconciliation fetched the rest
    finally:
        carrying.stop()
        await stop_nodes(nodes)


async def test_a_node_does_not_narrow_to_a_half_too_few_nodes_carry():
    a, busy = Node(fast_config()), Node(fast_config())
    nodes = [a, busy]
    for n in nodes:
        await n.start()
    clock = [1000.0]
    carrying = Carrying(busy, DepthRule(budget=1_000, floor=2, settle=60),
                        keys=lambda: (OWN,), clock=lambda: clock[0], interval=3600)
    carrying.start()
    try:
        busy.add_peer(f"127.0.0.1:{a.port}")
        await wait_all([busy], linked(1), 10)
        now = int(time.time())
        envs = [in_shard(k << 8, now) for k in range(0, 256, 32)]
        for e in envs:
            await a.publish(e.raw)
        await wait_all([busy], has_all({e.id for e in envs}), 20)
        clock[0] += 3600
        assert carrying.intake.per_day(clock[0]) > 1_000
        assert carrying.carriers(HIGH) == 1
        for i in range(20):  # peer exchange's word that others carry it does not count
            assert busy.book.learn(f"8.{i}.1.1:4000", "127.0.0.1", shards=shards.EVERYTHING)
        assert len(busy.book.book.carriers(HIGH)) >= 20 and carrying.carriers(HIGH) == 1
        assert not carrying.step()  # one known carrier besides itself: it keeps everything
        assert busy.config.shards == shards.EVERYTHING
    finally:
        carrying.stop()
        await stop_nodes(nodes)


def test_a_daemon_choosing_its_shards_says_so(pim: Paranoim,
                                              free_port: Callable[[], int]) -> None:
    """``[p2p] carry_mb_day`` on a real ``paranoim run``: it starts with every shard and
    both its start-up lines and ``paranoim status`` say how it chooses them."""
    pim.write_config('[p2p]\nlisten = "127.0.0.1"\ncarry_mb_day = 300\n')
    d = pim.start_daemon(free_port=free_port)
    assert "300 MB a day" in d.wait_for("Shards chosen by intake")
    res = pim.run("status")
    assert res.returncode == 0, res.stderr
    assert "Shards:   0/0 (depth 0, chosen by intake: 0.0 MB a day" in res.stdout
    assert "budget 300)" in res.stdout
    assert d.stop() == 0
    pim.write_config('[p2p]\nlisten = "127.0.0.1"\ncarry_mb_day = 300\nshards = ["0/1"]\n')
    res = pim.run("run", "--p2p-port", str(free_port()))
    assert res.returncode != 0 and "keep one" in res.stderr and "Traceback" not in res.stderr
