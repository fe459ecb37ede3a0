"""Which carriers a hand-off asks first (``bridge.net.handoff``): one per network group
(/16) before a second of any, those reached before first, never one already tried while
another is known, and those tried again only when none other is left."""

from __future__ import annotations

from bridge.core import shards
from bridge.net.node import Node
from tests.gossip_support import fast_config

HIGH = shards.prefix(1, 1)
SHARD = 0x9234


def node_knowing(*addrs: str, reached: tuple[str, ...] = ()) -> Node:
    node = Node(fast_config(shards=(shards.prefix(0, 1),)))
    for a in addrs:
        assert node.book.learn(a, shards=(HIGH,))
    for a in reached:
        node.book.good(a, (HIGH,))
    node.book.learn("7.7.7.7:1", shards=(shards.prefix(0, 1),))  # carries the other half
    return node


async def test_one_carrier_per_16_first_and_those_reached_before_first():
    same = ["8.8.1.1:1", "8.8.2.2:1", "8.8.3.3:1"]
    node = node_knowing(*same, "9.9.9.9:1", reached=("8.8.2.2:1",))
    for _ in range(20):  # the order within a rank is random
        order = await node.handoffs._carriers(SHARD, set())
        assert order[:2] == ["8.8.2.2:1", "9.9.9.9:1"]  # reached, then the other /16
        assert sorted(order[2:]) == ["8.8.1.1:1", "8.8.3.3:1"]
        assert "7.7.7.7:1" not in order


async def test_carriers_already_tried_come_back_only_when_no_other_is_left():
    node = node_knowing("8.8.1.1:1", "9.9.9.9:1")
    tried = {"8.8.1.1:1"}
    assert await node.handoffs._carriers(SHARD, tried) == ["9.9.9.9:1"]
    assert node.handoffs._known(SHARD, {"8.8.1.1:1", "9.9.9.9:1"}) == []
    # a node that knows no carrier and has no peer to ask finds none, without waiting
    lone = Node(fast_config(shards=(shards.prefix(0, 1),)))
    assert await lone.handoffs._carriers(SHARD, set()) == []
