"""Real nodes on loopback learn who carries what through peer exchange (docs/sharding.md,
item 5): a node's HELLO tells its own prefixes, and a PEERS entry passes them on."""

from __future__ import annotations

from bridge.core import shards
from bridge.core.addrbook import CLAIMED, DIALLED, HEARD
from bridge.net.node import Node
from tests.gossip_support import fast_config, linked, wait_all
from tests.gossip_support import stop_all as stop_nodes
from tests.util import free_tcp_port, wait_until

LOW, HIGH = shards.prefix(0, 1), shards.prefix(1, 1)


async def test_a_node_learns_a_stranger_s_prefixes_from_a_peer():
    high = Node(fast_config(shards=(HIGH,)))
    full = Node(fast_config())
    low = Node(fast_config(shards=(LOW,)))  # never links to ``high`` (no discovery dials)
    nodes = [high, full, low]
    for n in nodes:
        await n.start()
    try:
        high_addr, full_addr = f"127.0.0.1:{high.port}", f"127.0.0.1:{full.port}"
        high.add_peer(full_addr)
        await wait_all([full], linked(1), 10)
        low.add_peer(full_addr)
        await wait_all([full], linked(2), 10)

        def heard() -> bool:
            e = low.book.book.entry(high_addr)
            return e is not None and bool(e.shards)

        await wait_until(heard, 10, message="low hearing of high's prefixes from full")
        told = low.book.book.entry(high_addr)
        assert told is not None and (told.shards, told.shards_from) == ((HIGH,), HEARD)
        # the node it dialled told of itself: everything
        dialled = low.book.book.entry(full_addr)
        assert dialled is not None and (dialled.shards, dialled.shards_from) == (
            (shards.ALL,), DIALLED)
        assert sorted(low.book.book.carriers(HIGH)) == sorted([high_addr, full_addr])
        assert low.book.book.carriers(shards.prefix(0, 2)) == [full_addr]
        assert not any(c.dialled == high_addr or c.address == high_addr for c in low.conns)
        # and the middle node heard it from high's own HELLO, on the link high opened
        own = full.book.book.entry(high_addr)
        assert own is not None and (own.shards, own.shards_from) == ((HIGH,), CLAIMED)
    finally:
        await stop_nodes(nodes)


async def test_a_node_does_not_dial_an_address_known_to_share_none_of_its_shards():
    node = Node(fast_config(shards=(LOW,), target_peers=4))
    await node.start()
    try:
        other, same, unknown = (f"127.0.0.1:{free_tcp_port()}" for _ in range(3))
        node.book.learn(other, "", shards=(HIGH,))
        node.book.learn(same, "", shards=(shards.prefix(1, 2),))  # inside the low half
        node.book.learn(unknown, "")
        node.dialer.discover()
        assert set(node.dialer.tried) == {same, unknown}
    finally:
        await stop_nodes([node])


async def test_a_node_asks_its_peers_who_carries_a_prefix():
    high = Node(fast_config(shards=(HIGH,)))
    full = Node(fast_config())
    low = Node(fast_config(shards=(LOW,), peer_exchange=False))  # no PEERS: only the lookup
    nodes = [high, full, low]
    for n in nodes:
        await n.start()
    try:
        high_addr, full_addr = f"127.0.0.1:{high.port}", f"127.0.0.1:{full.port}"
        high.add_peer(full_addr)
        await wait_all([full], linked(1), 10)
        low.add_peer(full_addr)
        await wait_all([full], linked(2), 10)
        assert low.book.book.carriers(HIGH) == [full_addr]  # it dialled full: everything
        assert low.find_carriers(HIGH) == 1
        await wait_until(lambda: high_addr in low.book.book.carriers(HIGH), 10,
                         message="full's answer naming high")
        entry = low.book.book.entry(high_addr)
        assert entry is not None and (entry.shards, entry.shards_from) == ((HIGH,), HEARD)
        # a prefix only the asker carries, but for full itself: an empty answer, no violation
        assert low.find_carriers(shards.prefix(0, 2)) == 1
        await wait_until(lambda: not any(c.link.finding for c in low.conns), 10,
                         message="full's empty answer")
        assert low.book.book.carriers(shards.prefix(0, 2)) == [full_addr]
        for n in nodes:
            assert not [e for e in n.recent_errors if "banned" in e], n.recent_errors
    finally:
        await stop_nodes(nodes)
