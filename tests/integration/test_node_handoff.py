"""Hand-off between real nodes on loopback (docs/sharding.md, "Sending to another shard";
``bridge.net.handoff``): a node that carries half 0 gets its envelope for half 1 to
carriers it finds by asking a peer, the check with another carrier hands it over again
when the first carriers dropped it, and a carrier's caps on hand-off links."""

from __future__ import annotations

import os
import time

import aiohttp

from bridge.core import shards
from bridge.core.gossip_events import Budgets
from bridge.core.gossip_wire import ByeReason, FrameType, Have, Hello, Want, parse
from bridge.core.gossip_wire import encode as enc
from bridge.net.handoff import HandoffSettings
from bridge.net.node import Node
from bridge.store.sqlite import SQLiteStore
from tests.gossip_support import LOW_BITS, fast_config, has_all, linked, make_envelope, wait_all
from tests.gossip_support import stop_all as stop_nodes

LOW, HIGH = shards.prefix(0, 1), shards.prefix(1, 1)
QUICK = HandoffSettings(check_after=1.0, answer_timeout=1.0, lookup_timeout=2.0)


def in_shard(key: int, now: int):
    return make_envelope(now, tag=key.to_bytes(2, "big") + os.urandom(14))


def addr(n: Node) -> str:
    return f"127.0.0.1:{n.port}"


def no_bans(nodes: list[Node]) -> None:
    for n in nodes:
        assert not [e for e in n.recent_errors if "banned" in e], n.recent_errors


async def test_a_half_0_node_hands_its_envelope_to_carriers_of_half_1():
    sender = Node(fast_config(shards=(LOW,), handoff=QUICK))
    low = Node(fast_config(shards=(LOW,)))  # the sender's one peer: carries none of it
    h1, h2, recipient = (Node(fast_config(shards=(HIGH,))) for _ in range(3))
    nodes = [sender, low, h1, h2, recipient]
    for n in nodes:
        await n.start()
    try:
        for a, b in ((sender, low), (low, h1), (low, h2), (h1, h2), (recipient, h1),
                     (recipient, h2)):
            a.add_peer(addr(b))
        await wait_all([low, h1, h2], linked(3), 10)
        await wait_all([sender], linked(1), 10)
        leaf = shards.Prefix(0x9234, 16)
        assert sender.book.book.carriers(leaf) == []  # it has to ask

        env = in_shard(0x9234, int(time.time()))
        await sender.publish(env.raw)
        await wait_all([h1, h2, recipient], has_all({env.id}), 20)
        assert env.id not in low.store  # never offered to a node that does not carry it
        assert set(sender.book.book.carriers(leaf)) >= {addr(h1), addr(h2)}  # FIND_SHARD
        await sender.wait_for(lambda: sender.handoffs.stats["handed"] == 1, 10)
        # the sender's links are what they were: the hand-off links came and went
        assert [c.address for c in sender.active_conns()] == [addr(low)]
        await wait_all([h1, h2], lambda n: not any(c.link.handoff for c in n.conns), 10)
        no_bans(nodes)
    finally:
        await stop_nodes(nodes)


async def test_a_light_node_hands_off_what_none_of_its_full_peers_carries():
    low = Node(fast_config(shards=(LOW,)))  # the light node's one full peer
    carrier = Node(fast_config(shards=(HIGH,)))
    for n in (low, carrier):
        await n.start()
    light = Node(fast_config(light=True, handoff=QUICK, bootstrap=[addr(low)]))
    nodes = [low, carrier, light]
    try:
        await light.start()
        low.add_peer(addr(carrier))
        await wait_all([light], linked(1), 10)
        await wait_all([low], linked(2), 10)
        now = int(time.time())
        to_low, to_high = in_shard(0x1234, now), in_shard(0x9234, now)
        await light.publish(to_low.raw)  # its full peer carries it: the ordinary link
        await light.publish(to_high.raw)  # none does: a hand-off to a carrier found by asking
        await wait_all([low], has_all({to_low.id}), 10)
        await wait_all([carrier], has_all({to_high.id}), 20)
        await light.wait_for(lambda: light.handoffs.stats["handed"] == 1, 10)
        assert to_low.id not in light.handoffs.pending
        no_bans(nodes)
    finally:
        await stop_nodes(nodes)


async def test_the_check_hands_over_again_when_the_first_carriers_dropped_it():
    sender = Node(fast_config(shards=(LOW,), handoff=QUICK, peer_exchange=False))
    low = Node(fast_config(shards=(LOW,)))
    a, b = Node(fast_config(shards=(HIGH,))), Node(fast_config(shards=(HIGH,)))  # cut off
    c, recipient = Node(fast_config(shards=(HIGH,))), Node(fast_config(shards=(HIGH,)))
    nodes = [sender, low, a, b, c, recipient]
    for n in nodes:
        await n.start()
    try:
        for x, y in ((sender, low), (low, c), (recipient, c)):
            x.add_peer(addr(y))
        await wait_all([low, c], linked(2), 10)
        for n in (a, b):  # the sender knows these two carriers, and only them
            assert sender.book.learn(addr(n), first_hand=True, shards=(HIGH,))

        env = in_shard(0xC001, int(time.time()))
        await sender.publish(env.raw)
        await wait_all([a, b], has_all({env.id}), 10)  # handed to the two it knew
        await stop_nodes([a, b])  # gone with it, before passing it on: dropped
        assert env.id not in c.store
        # the check asks a carrier found by FIND_SHARD (c), which lacks it: handed over
        await wait_all([c, recipient], has_all({env.id}), 20)
        stats = sender.handoffs.stats
        await sender.wait_for(lambda: stats["again"] == 1, 10)
        assert stats["handed"] == 1
        await sender.wait_for(lambda: env.id not in sender.handoffs.pending, 30)
        assert stats["settled"] == 1  # the next check found it there
        no_bans([sender, low, c, recipient])
    finally:
        await stop_nodes(nodes)


async def test_an_envelope_kept_in_the_store_is_handed_off_after_a_restart(tmp_path):
    path = str(tmp_path / "envelopes.db")
    sender = Node(fast_config(shards=(LOW,), handoff=QUICK), store=SQLiteStore(path))
    await sender.start()
    env = in_shard(0xA000, int(time.time()))
    await sender.publish(env.raw)  # no carrier known, no peer to ask
    await sender.stop()
    sender.store.close()
    carrier = Node(fast_config(shards=(HIGH,)))
    again = Node(fast_config(shards=(LOW,), handoff=QUICK), store=SQLiteStore(path))
    nodes = [carrier, again]
    try:
        for n in nodes:
            await n.start()
        assert env.id in again.handoffs.pending  # found in the store at start
        assert again.book.learn(addr(carrier), first_hand=True, shards=(HIGH,))
        await wait_all([carrier], has_all({env.id}), 20)
        no_bans(nodes)
    finally:
        await stop_nodes(nodes)
        again.store.close()


async def hand_off_link(session: aiohttp.ClientSession, node: Node):
    ws = await session.ws_connect(f"http://{addr(node)}/p2p")
    now = int(time.time())
    await ws.send_bytes(enc(Hello(2, LOW_BITS, now, os.urandom(16), False, "",
                                  shards.EVERYTHING, handoff=True)))
    assert isinstance(parse(await ws.receive_bytes(timeout=5)), Hello)
    return ws


async def bye_of(ws: aiohttp.ClientWebSocketResponse) -> tuple[ByeReason, str] | None:
    async for m in ws:
        if m.type == aiohttp.WSMsgType.BINARY and m.data[0] == FrameType.BYE:
            msg = parse(m.data)
            return msg.reason, msg.text  # type: ignore[union-attr]
    return None


async def test_a_carrier_caps_hand_off_links_per_host_closes_them_and_answers_only_wants():
    settings = HandoffSettings(per_host=2, lifetime=2.0)
    node = Node(fast_config(shards=(HIGH,), handoff=settings))
    await node.start()
    try:
        async with aiohttp.ClientSession() as session:
            first = [await hand_off_link(session, node) for _ in range(2)]
            await node.wait_for(lambda: sum(c.link.active for c in node.conns) == 2, 5)
            third = await hand_off_link(session, node)
            assert await bye_of(third) == (ByeReason.NORMAL, "no room for another hand-off link")
            # an offer is asked for, and nothing comes back: no PEERS, no HAVE
            env = in_shard(0x8888, int(time.time()))
            await first[0].send_bytes(enc(Have((env.id,))))
            assert parse(await first[0].receive_bytes(timeout=5)) == Want((env.id,))
            await first[0].send_bytes(bytes([FrameType.ENVELOPE]) + env.raw)
            await node.wait_for(lambda: env.id in node.store, 5)
            for ws in first:  # closed by the carrier once their time is up
                assert await bye_of(ws) == (ByeReason.NORMAL, "hand-off link expired")
        no_bans([node])
    finally:
        await stop_nodes([node])


async def test_a_spent_hand_off_link_is_closed_and_one_id_too_many_is_a_flood():
    node = Node(fast_config(shards=(HIGH,), budgets=Budgets(handoff_ids=2)))
    await node.start()
    try:
        now = int(time.time())
        envs = [in_shard(0x8000 + i, now) for i in range(3)]
        async with aiohttp.ClientSession() as session:
            ws = await hand_off_link(session, node)
            await ws.send_bytes(enc(Have((envs[0].id, envs[1].id))))
            assert set(parse(await ws.receive_bytes(timeout=5)).ids) == {  # type: ignore[union-attr]
                envs[0].id, envs[1].id}
            for e in envs[:2]:
                await ws.send_bytes(bytes([FrameType.ENVELOPE]) + e.raw)
            assert await bye_of(ws) == (ByeReason.NORMAL, "hand-off complete")
            ws = await hand_off_link(session, node)
            await ws.send_bytes(enc(Have(tuple(e.id for e in envs))))
            reason = await bye_of(ws)
            assert reason is not None and reason[0] is ByeReason.FLOOD
        await node.wait_for(lambda: all(e.id in node.store for e in envs[:2]), 5)
    finally:
        await stop_nodes([node])
